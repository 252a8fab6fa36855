// Package regions decides which region's cluster each statement goes to,
// knows which region holds a subject, and keeps the decisions of
// transactions that write to several clusters (two-phase commit).
//
// # Routing
//
// A session belongs to a region (server.region in privata.yaml, by default
// the policy's default region); its statements go to that region's
// cluster, except where the statement's own values say otherwise
// (rewrite.RouteHints, with the parameters a client bound):
//
//   - an INSERT into the residency table goes to the home region of its
//     rows, by the residency rule applied to the residency column's value
//     (a constant or a bound parameter; a binary value of a type other than
//     text is read by a cluster as the column's type). Rows of two
//     clusters' regions in one statement are refused (0A000);
//   - an INSERT into a child table goes where the subject its reference
//     names lives;
//   - UPDATE, DELETE and SELECT that name subjects by key (the subject
//     table's key, or a child's reference, = or IN constants or
//     parameters) go where those subjects live; subjects of several
//     clusters in one statement are refused (0A000);
//   - an UPDATE that changes the residency column to another cluster's
//     region is a move: refused (23514) when the policy says
//     on_region_change: refuse, refused (0A000) without two-phase commit,
//     else Route.Move tells the proxy to move the subject;
//   - everything else (no key, INSERT ... SELECT, COPY, DDL, statements on
//     unclassified tables) goes to the session's cluster, whose row-level
//     security refuses rows of regions it does not serve.
//
// A read routed to another region returns that region's subjects to this
// one: it needs a transfer of the policy for the session's role and
// purpose, for each class of data it reads (identity when an identity
// column is read, clinical always); Route.Transfers names them, for the
// audit, and without one the read is refused (42501, naming the region).
//
// # The directory
//
// Which region holds a subject is asked of every cluster at once (an index
// lookup of the key in privata_identity.<table>, which also gives the
// region of a cluster serving several), and remembered by each Privata
// instance for server.directory_ttl; inserts routed through the instance
// teach it too. The keys themselves never leave their home cluster: no
// cluster stores a directory of other regions' subjects. A cluster that
// cannot be reached fails a lookup (08001, naming its region) only when no
// other cluster holds the subject.
//
// # Two-phase commit
//
// See TwoPhase: participants prepare, the coordinator records its decision
// in the cluster the transaction id names, and Recover resolves what a
// crash left prepared when `privata serve` starts.
//
// The package does not log.
package regions
