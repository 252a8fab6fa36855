// Package rewrite reads statements the way PostgreSQL will: it parses them
// with pg_query (PostgreSQL's own parser, compiled in), finds what they
// touch, resolves that against the policy and decides what Privata does
// with them. It never logs and never touches the network.
//
// # Flow
//
// A statement text goes through four steps, each a function the proxy calls:
//
//	text --Analyze--> Analysis --Classify(policy)--> Classification --Decide(session)--> Decision
//
// Analyze parses the text once and walks each statement's tree. It reports
// the statement's kind and command tag, pg_query's fingerprint, every
// relation referenced (read or written), every column referenced and the
// relation it belongs to where the text says so, the run-time parameters
// the statement assigns (Privata's own privata.actor and privata.purpose
// among them), the sqlcommenter tags of the text's comments, and two
// findings the proxy must act on: RoleChange, when running the statement
// could change the session's role or session authorization (SET ROLE,
// set_config('role', ...), a DO block or function body that does either or
// runs dynamic SQL, ...), and Unsafe, when it would make Privata misread
// later statements (standard_conforming_strings off, a client encoding
// other than UTF8). Opaque marks the few statements that read tables they
// do not name (schema_to_xml()). DO blocks and function bodies are
// analysed with pg_query's PL/pgSQL parser: every SQL statement and
// expression in them is parsed and walked in turn; SQL text given to
// query_to_xml() and its kin is parsed too when it is a constant.
//
// Classify resolves the relations through a search path to the policy's
// classified tables, and the columns to their classes. Decide turns the
// findings into Allow or Refuse with a SQLSTATE, a message and a hint that
// never quote a value from the statement.
//
// # Split tables
//
// A classified table is a view over split storage (package storage), and
// PostgreSQL does some things to views differently or not at all. The
// analysis records them as Operations (operations.go): an upsert, COPY ...
// TO, TRUNCATE, MERGE, a lock, a grant, a view or publication over the
// table. Decide judges each on a classified table in one place
// (classified.go, with the DDL decisions beside it): most are refused with
// 0A000, a message naming the table and what is not supported, and a
// hint; three are answered Rewrite, and a Rewriter writes them from their
// parse trees in a form that does on split storage what the statement does
// on a plain table:
//
//   - INSERT ... ON CONFLICT becomes inserts into the table's upsert views
//     (upsert.go): the client's source, SET list, WHERE and RETURNING are
//     grafted into a statement built from Privata's own names, and
//     pg_query deparses it. Parameters keep their numbers, and the command
//     tag is INSERT 0 n.
//   - COPY t [(columns)] TO ... becomes COPY (SELECT columns FROM t) TO ...
//   - TRUNCATE t truncates t's base tables.
//
// On a database with split tables, RewriteWithCatalog also points a
// statement that reads the catalogs ORMs introspect (information_schema,
// pg_catalog) at their emulations in schema privata_catalog, which show
// each split table as the plain table it replaced (catalog.go).
//
// The other statements of a text stay as they are, byte for byte; the
// Rewriter keeps recent results by text.
//
// # Errors
//
// Analyze's errors are *Error values shaped like an ErrorResponse: 42601
// for syntax errors (pg_query's message, with any constant it quotes
// replaced by a description), 22021 for invalid UTF-8 or NUL bytes, 54000
// for a text over the size limit, 54001 for a statement nested too deeply
// to parse safely. Before a text reaches pg_query, guard bounds its size
// and, from its tokens alone, how deep its parse tree can be (depth.go):
// pg_query's C code crashes the process on trees some tens of thousands of
// levels deep (SELECT 1+1+1+...), so such texts must never reach it.
// Everything after the parse is linear in the text's size, and texts over
// 256 KiB are analysed one at a time, so that a few clients cannot make
// Privata hold many large trees at once.
//
// # Cache and fast path
//
// Parsing costs tens of microseconds per statement, so an Analyzer keeps
// the analyses of recently seen texts in an LRU keyed by the exact text:
// a Parse message repeated by a driver, or the same query text sent
// again, is answered from there. Clients that send constants inline
// (pgbench -M simple, psql, ORMs without parameters) send a new text each
// time; for them a small Go lexer (lex.go) computes a shape, the text's
// tokens with string and numeric constants replaced by their class, and a
// second LRU maps shapes to analyses (fastpath.go). Texts of one shape parse
// to the same tree up to constant values, so only the statements' spans and
// the comment tags are recomputed. The lexer models PostgreSQL's scanner
// for plain constants only; dollar quotes, E” and other prefixed strings,
// backslashes, nested comments, psql variables and non-ASCII text outside
// constants send the text to the full parser. Analyses that read a
// constant's content (SET values, set_config names, function bodies) never
// enter the shape cache.
//
// # pg_query and concurrency
//
// Every pg_query call redirects the process's stderr through a pipe while
// it runs (libpg_query does this to capture parser warnings), so calls are
// serialised by one mutex: two at once could leave stderr pointing at a
// closed pipe, and Go exits on SIGPIPE from a write to stderr. Cache hits
// do not take the mutex. A line written to stderr by another goroutine
// while a parse runs can be lost.
//
// pg_query_go v5 embeds PostgreSQL 16's grammar. It accepts a few forms
// PostgreSQL 15 rejects (0x1F, 1_000); those fail on the server.
package rewrite
