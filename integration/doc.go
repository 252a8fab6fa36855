// Package integration holds Privata's end-to-end tests: real clusters and
// real ORM applications.
//
// # The applications
//
// apps/ holds small Node projects, one per ORM (Prisma, Sequelize, TypeORM,
// Knex, Drizzle, and node-postgres with hand-written SQL), all on the same
// clinic schema (patients and their encounters) and all running the same
// scenario: migrate an empty database with the ORM's own mechanism; create,
// read with a filter and with the encounters joined, update, upsert by key
// and by the unique ssn, delete, roll a transaction back, bulk insert 10,000
// patients, and upsert one key from two connections at once. Each app checks
// every result itself, exits non-zero with a message on the first mismatch,
// and prints a one-line JSON summary. It also writes every value it stored to
// the file named by PRIVATA_APP_VALUES (see Report).
//
// # The harness
//
// TestApps runs each app against a fresh database of the package's cluster,
// after `npm ci` in the app's folder (once per lockfile: a stamp in
// node_modules remembers it). The URL the apps get comes from one function,
// appDatabaseURL; today it is the database itself, the baseline every app
// must pass on a plain database.
//
// After an app, the harness checks the cluster directly. On a plain database
// (CheckPlain) every value the app says it stored is where it wrote it, so
// that its report can be trusted. On a database Privata split under
// apps/policy.yaml (CheckSplit, CheckRoles) identity values are only in the
// identity tables, clinical values only in the clinical tables, the subject's
// key never beside clinical data, and no role reads in the clear what the
// policy masks or withholds from it.
package integration
