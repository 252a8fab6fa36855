// Package proxy is Privata's front door: a PostgreSQL wire-protocol (3.0)
// server that every client reaches with an ordinary PostgreSQL URL, and that
// relays each client's session to the cluster behind it, every statement
// analysed and decided on first.
//
// # A session
//
//	client ──TLS?──▶ handshake ─▶ authenticate ─▶ connect upstream (pgconn, hijacked)
//	                 (SSLRequest,  (SCRAM-SHA-256,  SET ROLE <the policy's role>
//	                  GSSENC: N,    auth_query,      ParameterStatus, BackendKeyData
//	                  Cancel)       trust)           relayed to the client
//
//	           front (client side)                        back (upstream side)
//	client ─▶ read message ─▶ analyse (rewrite) ─▶ push entry ─▶ write ─▶ PostgreSQL
//	client ◀─ write ◀─ match response against the head entry ◀─ read ◀─┘
//
// One upstream connection serves one client connection for its whole life;
// nothing passes from one client to another. The client side (front) reads
// the client's messages, analyses every Query and Parse text with package
// rewrite, and forwards what is allowed. Before writing a message upstream
// it pushes an entry onto the session's FIFO saying what the message will
// produce (a Query: everything up to ReadyForQuery; a Parse: ParseComplete;
// an Execute: rows then CommandComplete, PortalSuspended or
// EmptyQueryResponse; ...). The upstream side (back) relays responses to the
// client in order, matching each against the head of the FIFO. After an
// error, the backend skips extended-protocol messages until Sync; their
// entries are dropped at the next ReadyForQuery.
//
// The FIFO is what lets Privata change the stream without the client
// noticing:
//
//   - A refused Query or Parse is replaced upstream by a stand-in statement
//     that fails in the parser, so that upstream and client agree that it
//     failed (and that a transaction block is aborted); the stand-in's error
//     is replaced by Privata's ErrorResponse with the refusal's SQLSTATE.
//   - Messages Privata injects are marked hidden and their responses are not
//     relayed: SET ROLE again after DISCARD ALL or RESET ALL, and set_config
//     of privata.actor, privata.purpose and privata.break_glass when a
//     statement's sqlcommenter tags ask for values the upstream session does
//     not have. They run on a named statement and portal of Privata's own,
//     so that the client's unnamed ones survive.
//   - A per-statement observer can see row descriptions, rows (before they
//     are released to the client) and command tags; with none attached, rows
//     are copied through undecoded.
//
// # Regions
//
// With several clusters (Options.Router, package regions), a session's
// connection goes to its region's cluster, and each statement is routed:
// one that package regions sends to another region's cluster runs on a
// side connection to it (side.go), opened on first use with the client's
// startup parameters and role, and brought up to date with the client's
// SET statements, Privata's context values and transaction block before
// each use. The client side first waits until the home connection has
// answered everything sent before (it sends a Flush and waits for the
// queue to empty), then relays the side's answers itself under cwMu, which
// the upstream side holds for each message it relays: the client sees one
// stream, in order. A Bind is routed with its parameters (the statement's
// Parse is replayed on the side); the portal's Describe, Execute and Close
// follow it, and Sync ends the cycle on the sides it reached before the
// home connection. An error on a side skips the rest of the cycle, as
// PostgreSQL would.
//
// Writes are tracked per transaction (the home connection's from its
// command tags and ReadyForQuery, the sides' by Privata): a write that
// would make a transaction write to two clusters is refused unless
// two-phase commit is on; COMMIT then prepares every part, records the
// decision and commits (commit.go). A subject's move between clusters
// copies its rows through the application's views (moves.go). Reads of
// another region's subjects, routed or through the foreign tables of
// package fdw, need a transfer of the policy; each one allowed is reported
// to Options.OnTransfer.
//
// # Performance
//
// Messages Privata does not inspect are copied by their framing (type and
// length) from one buffer to the other without allocation; a message larger
// than the buffer streams through (COPY data is never held whole). Writes
// are buffered and flushed when the next message is not already buffered.
// Statement analyses are cached by the analyzer.
//
// # Safety
//
// A message whose declared length is over server.max_message_bytes is
// refused (08P01) before its body is read. A client's role cannot change:
// statements that could change it are refused (42501) by the analysis, the
// startup options cannot set role or session_authorization, FunctionCall
// messages may call only large-object functions, and a watchdog ends the
// session if the backend ever reports is_superuser=on for a role that is
// not a superuser, or standard_conforming_strings=off. A client that
// vanishes has its upstream connection closed at once (a running statement
// is cancelled first); an upstream that dies ends only its own session, with
// PostgreSQL's FATAL error when it sent one, else 08006.
//
// The package does not log: Options.OnSessionEnd tells the caller how each
// session ended, and metrics go to Options.Registerer. Neither ever carries
// SQL text or values.
package proxy
