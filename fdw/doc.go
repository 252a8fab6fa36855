// Package fdw lets a session in one region query other regions' data,
// pseudonymised at home, over postgres_fdw: what `privata plan` prints and
// `privata apply` creates for that in each cluster, and what a statement
// reads across regions (Crossings), for the proxy to check and audit.
//
// # What crosses
//
// Nothing, unless the policy's transfers allow it: a transfer names the
// subjects' home region (from), the reading session's region (to), the
// policy roles, the purposes (privata.purpose) and the classes of data
// (clinical, identity) that may cross, and its legal basis.
//
// # In each cluster
//
//	privata_export.T        one view per classified table T: home region, pseudonym,
//	                        a subject's key (full identity access only), T's columns
//	                        without a child's reference to its subject; each value as
//	                        the reader's access shows it (full, masked or NULL)
//	privata_region_R.T      foreign tables over cluster R's exports (server R)
//	privata_global.T        this cluster's export of T UNION ALL every other region's
//	privata_export_<i>_<c>  login roles other clusters read this one as
//
// For every other cluster whose regions a transfer lets into this one's,
// apply creates a foreign server named after that cluster's region (so
// that postgres_fdw's "could not connect to server" names the region), a
// user mapping for each policy role the transfers name, and the foreign
// tables. A user mapping maps the role to the export role whose access is
// the role's own for the classes its transfers carry and none for the
// rest: an analyst allowed clinical data reads as privata_export_none_full,
// whose identity columns come back NULL from the exporting cluster itself,
// so identity values never leave home unless a transfer lets them. The
// export roles' password is the exporting cluster's fdw password in
// privata.yaml, set as a SCRAM-SHA-256 verifier there and as the user
// mappings' password here; plan prints Placeholder instead, and apply runs
// those statements with statement logging off.
//
// The views of privata_global are security_invoker, so that each reader
// reads as its own user mapping. Each other region's branch is gated by
// privata.transfer_gate(region, view), which raises 42501 naming the region
// when no transfer lets the reader's role, for its purpose, read it:
// a cross-region query never returns partial results silently. Identity
// columns of another region's rows read privata.transfer_permits(region,
// 'identity'), so that a role whose identity transfer serves another
// purpose reads NULL. A region that is down fails the query with
// postgres_fdw's 08001, naming the region's server.
//
// # Plan and apply
//
// The objects hold no data, so they are rebuilt rather than altered: the
// plan drops those that exist and creates them again when the derived SQL
// changed (privata.fdw_state.derived_hash), when privata.fdw_fingerprint()
// differs from what apply recorded (drift: a dropped foreign table, a
// changed server option) or when the split storage's part of the plan
// changes the split tables (the export views depend on their access
// views; the drops then run first, as Plan.Before). Passwords are compared
// one by one (the fingerprint leaves them out): a user mapping whose
// password differs from privata.yaml gets ALTER USER MAPPING; an export
// role whose verifier does not verify the password gets ALTER ROLE. The
// export roles are cluster-wide and planned precisely. A rebuild that
// would drop objects of others (views on the cross-region views, foreign
// tables on Privata's servers) is refused.
//
// cmd/controller prints the steps around the split storage's steps and
// applies them in the same transaction, under the same advisory lock.
//
// # Not supported
//
// Regions whose identity and clinical data live in separate clusters
// (refused by plan). Aggregates over privata_global are computed locally:
// PostgreSQL pushes aggregates down to a foreign table read directly
// (privata_region_R.T), not to a UNION ALL branch.
//
// The package does not log.
package fdw
