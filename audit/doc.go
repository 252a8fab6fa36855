// Package audit is Privata's audit trail: typed records of who read and who
// changed which subject's data, their append-only, hash-chained store, its
// verification, the accounting of disclosures, and an optional JSON-lines
// sink. Audit is not logging: records have their own durability rules, and
// none of them holds a value of a subject's data. Tables and columns are
// named; subjects are their pseudonyms.
//
// # Records
//
// A Read is one statement that touched classified columns, as the proxy saw
// it: time, actor, role, client, application, purpose, break-glass, the
// normalised statement and its fingerprint, tables and columns, the
// decision, the rows sent and the pseudonyms of their subjects. A Change is
// one committed change of a row of a split table, as package logical reads
// it from the write-ahead log: operation, table, pseudonym, the names of the
// changed columns, commit time, transaction id, commit LSN and the session
// context.
//
// # The store
//
// By default every cluster holds its own store, the schema privata_audit
// (sql/0002_audit.sql); a separate audit database may hold all of them.
// read_log and change_log are append-only: no role has UPDATE, DELETE or
// TRUNCATE on them, and a trigger that fires even for superusers and in
// replica mode refuses those statements (SQLSTATE 42501). The views
// privata_audit.reads and privata_audit.changes and the function
// privata_audit.disclosures(uuid) are the SQL interface for DBAs.
//
// # Chains
//
// Every writer has its own chain: a change consumer per cluster
// ("change/us/1"), a proxy instance per store ("read/<instance>/1"). Record
// n of a chain carries seq n, the hash of record n-1 (for the first record,
// the chain's genesis, H(32 zero bytes || "privata audit chain" NUL name))
// and its own hash, H(prev || canonical form). H is SHA-256, or
// HMAC-SHA256 when audit.hmac_key is set; privata_audit.chains records the
// key's id (KeyID), and a new key starts a new chain. The canonical form is,
// in this order, with strings as uvarint length and bytes, string lists as
// uvarint count and strings, integers big-endian, times as int64
// microseconds since the Unix epoch, booleans as one byte:
//
//	read:   "privata.read.v1" NUL, time, actor, role, client_addr, application,
//	        purpose, break_glass, statement, fingerprint, tables, columns,
//	        decision, reason, rows (int64), subjects (uvarint count, 16 bytes each)
//	change: "privata.change.v1" NUL, commit time, xid (uint32), lsn (uint64),
//	        ordinal (uint32), operation, table, subject (16 bytes, zero for
//	        none), columns, actor, purpose, role, application, break_glass
//
// Store.Verify walks every chain in seq order and reports the first record
// whose content no longer matches its hash (changed), a gap in the sequence
// or a link to a record that is gone (removed), or a record linked after
// another than the one before it (reordered). A chain cannot show that its
// newest records were cut off; the sink, kept elsewhere, can.
//
// # The read path
//
// Writer.Append links a record into the instance's chain and writes it to
// a local spool (a directory of append-only JSON-lines segments) before it
// returns, so a kill -9 of Privata right after loses nothing; the fsync
// policy bounds what a crash of the machine loses. A background shipper
// copies the spool to the store, each record exactly once (the store's
// newest seq of the chain says where to resume), and removes shipped
// segments. When the spool cannot be written, or holds more than
// WriterOptions.MaxBytes because the store has been unreachable, Append
// fails with ErrUnavailable and the proxy refuses the statement, unless
// FailOpen is set for development.
//
// # The change path
//
// ChangeChain.Write commits a batch of change records in one transaction;
// package logical acknowledges WAL only after it returns, and resumes from
// the Progress that OpenChangeChain reads back from the store.
//
// # The sink
//
// A Sink receives every record as a JSON line before the store commits it,
// so every stored record was written to the sink; after a kill a line may
// repeat (same chain and seq). The sink file is not fsync'ed.
package audit
