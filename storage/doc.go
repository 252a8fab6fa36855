// Package storage is the split layout: it reads a database's catalog,
// derives the DDL a policy implies, and applies it under a lock.
//
// # The layout
//
// For a subject table T with key K (public.patients, key id):
//
//	privata_identity.T   K, privata_pseudonym (random, unique), privata_region, identity columns
//	privata_clinical.T   privata_pseudonym (primary key), clinical columns
//
// Other columns go with the side the policy's unclassified setting names.
// A child table C that refers to T by column R keeps every column but R in
// privata_clinical.C, with privata_pseudonym instead (a foreign key to
// privata_clinical.T carrying the original key's actions). Deleting an
// identity row (erasure) leaves clinical rows that name no one.
//
// The application's name becomes a view (security_invoker) over access
// views in privata_access, owned by privata_owner with definer rights.
// Their columns show each value in full, masked, or not at all, by the
// reader's membership in the group roles privata_identity_full,
// privata_identity_masked, privata_clinical_full, privata_clinical_masked.
// privata.has_access() answers that when a query is planned, so each
// column becomes the base column itself, its mask or NULL, and filters and
// joins on it use the base tables' indexes (masks.go). Three more views
// per table, T_upsert, T_apply and T_echo, carry out INSERT ... ON
// CONFLICT, which PostgreSQL refuses on views with triggers, for package
// rewrite (upsert.go).
// The policy's roles may read only keys and pseudonyms of the base
// tables, so no value reaches them any other way (base tables, COPY,
// functions, pg_stats). INSTEAD OF triggers split written rows; they run
// with the writer's rights, so a role without full access to a class gets
// PostgreSQL's own 42501 when it writes that class. Row-level security is
// forced on the base tables and checks new identity rows against the
// regions the cluster serves (privata.regions()).
//
// # Plan and apply
//
// Preview and Apply work on one Target (a cluster and the regions it
// serves) in one transaction, under the advisory lock sql.LockKey, with
// Privata's SQL installed first:
//
//  1. readCatalog reads the relations the policy names, their base tables,
//     the registry privata.tables, settings and roles.
//  2. policy.CheckDatabase checks the policy against the catalog.
//  3. setup steps: roles, schemas, settings, privata.region_of, memberships.
//  4. per table: a plain table is adopted (base tables created, rows
//     copied with fresh pseudonyms, constraints and indexes recreated on
//     the base table that holds their columns, sequences handed over, the
//     original dropped); a split table whose columns changed class is
//     migrated (columns move with their values).
//  5. Derive builds the views, triggers, grants and row-level security of
//     every table that was adopted or migrated, whose derived SQL changed
//     (privata.tables.derived_hash), or whose objects were changed behind
//     Privata's back (privata.fingerprint differs from catalog_hash).
//  6. The registry records what was done.
//
// Preview rolls the transaction back; Apply locks the tables it converts,
// plans again under the lock and commits. A plan with no steps is "nothing
// to do". What cannot be converted faithfully (a foreign key from an
// unclassified table, a constraint spanning identity and clinical columns,
// user triggers, rules, dependent views, rows of a region the cluster does
// not serve, children naming no subject) is refused with an Error before
// anything runs.
//
// Derive is the one function that knows how a split table's views,
// triggers and grants look; DDL rewriting calls it too, after changing
// base tables.
//
// The package does not log; cmd/controller does.
package storage
