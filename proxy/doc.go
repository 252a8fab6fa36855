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
//   - A Query or Parse that package rewrite rewrites for split tables
//     (an upsert, COPY TO, TRUNCATE) is forwarded rewritten; its answer is
//     the one the client's statement has on a plain table (rewrite.go).
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
// # The read path: audit of reads and the cache
//
// With Options.Audit or Options.Cache set, every allowed text whose
// statements name classified tables gets a read plan (readpath.go), made
// per session because the role and the search path matter:
//
//   - Audit. A statement that reads classified columns gets an audit.Read
//     record: the normalised statement (rewrite.Normalize: no constant, no
//     comment), its fingerprint, the classified tables and columns, the
//     decision (allowed; masked, with why, when the role sees a class
//     masked or not at all; refused, with the SQLSTATE, for a statement
//     the analysis refused) and the rows sent. The record's reason also
//     says when rows are not attributable to subjects (an aggregate,
//     DISTINCT, GROUP BY, a set operation, COPY, rows of a classified
//     table read outside the FROM list), when a result was audited in
//     parts, when the statement failed, and when it was served from cache.
//   - Subjects. A plain SELECT whose rows are rows of its top-level FROM
//     relations (rewrite.ReadShape) is forwarded with one hidden column per
//     split classified relation there, appended to the select list: the
//     pseudonym of the row's subject, looked up by the row's key (a subject
//     table) or reference (a child table) in privata_identity. The relay
//     reads the pseudonyms from each DataRow and strips the hidden columns
//     from DataRows and from RowDescriptions, Describe's included; a Bind
//     with per-column result formats gets a text format for each.
//   - Durability. The responses of an audited statement are held until
//     its record is appended (audit.Writer: durable in the local spool
//     against kill -9), then released: a read whose rows reached a client
//     is in the audit log. A result over 4 MiB is audited and released in
//     parts. Before forwarding a statement whose record would be written
//     the client side asks the writer (Check): when it could not write,
//     the statement is refused before it runs (58000, fail closed). Should
//     an Append fail after all, the rows are never sent and the session
//     ends, which rolls its transaction back.
//   - Cache. A text of one statement that is a pure point read of a split
//     table by its key (subject table) or subject (child table), or a pure
//     read of tables listed in cache.tables, is looked up before it is
//     forwarded, keyed by role, masking profile, purpose, cluster and
//     database, text, parameters, formats and output settings. A hit is
//     answered by Privata in order: through the queue when responses are
//     pending (entries with an answer), at once when none are; a Bind hit
//     makes a portal that exists only in Privata until Sync, and a cycle
//     answered whole gets Privata's ReadyForQuery. A hit is audited like a
//     read from PostgreSQL, marked served from cache. A miss stores what
//     the client got, with the subjects the rows showed as dependencies
//     (the table as a whole when none). The cache never answers or fills a
//     break-glass read, a read in a transaction block, or one forwarded
//     while another statement of the session is still running (a write
//     of the same pipeline). Writes through the session invalidate the
//     tables they wrote at the ReadyForQuery that ends their transaction,
//     before the client sees it; the change stream does the rest (wired
//     by cmd/controller).
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
