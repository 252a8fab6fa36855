// Package logical streams every committed change of the split tables of a
// cluster into the audit trail, from the write-ahead log, exactly once.
//
// # Flow
//
//	PostgreSQL --pgoutput--> replication --> decoder --> batches --> ChangeChain.Write
//	  (slot privata_audit,     (adapter)     (records)                (one store tx)
//	   publication                                                         |
//	   privata_changes)  <------------- acknowledge -----------------------+--> subscribers
//
// A Consumer per cluster opens a logical replication connection (the one
// place that speaks the replication protocol is replication.go), creates
// the permanent slot when it is missing, and streams the publication
// privata_changes (every table in privata_identity and privata_clinical)
// with pgoutput, protocol 1, logical messages included.
//
// The decoder keeps the Relation messages (columns by name) and the open
// transaction. Every Insert, Update and Delete becomes an audit.Change that
// names the row's privata_pseudonym and the changed columns, never values:
// an update names the columns whose old and new text differ (tables have
// REPLICA IDENTITY FULL, so the old row is there; a TOASTed value the update
// did not touch arrives as 'u' and is not named). A TRUNCATE becomes a
// record per table. The transaction's session context comes from the
// 'privata' logical message that privata.emit_context() writes before the
// first change of each statement: actor, purpose, break-glass, role and
// application. A client that bypassed Privata still fires the trigger, so
// its changes carry its role and no actor.
//
// # Exactly once
//
// Batches of records, whole transactions or pieces of a big one, are
// committed to the audit store in one transaction each; only then is the
// end of the last whole transaction acknowledged to the slot. The store's
// newest record says how far the consumer came (commit LSN and position in
// the transaction), so after a restart, whatever the slot replays that the
// store already has is skipped. Acknowledgements that a kill lost only make
// the slot replay more.
//
// # Operations
//
// Metrics: changes written, lag in bytes and seconds, commit-to-audit
// latency, WAL retained by the slot. When the slot retains more than
// Options.SlotWarnBytes, OnSlotWarning gets a SlotStatus whose Advice says
// how to recover and what dropping the slot loses. Subscribe hands durable
// changes, in commit order, to another consumer such as the cache
// invalidator.
package logical
