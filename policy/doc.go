// Package policy reads Privata's policy files: which tables hold personal
// data, how their columns are classified, where each data subject lives, and
// what each role may see.
//
// # Format (version 1)
//
//	version: 1
//	regions:                       # home regions and the clusters (privata.yaml) that hold them
//	  us: {cluster: us}
//	  eu: {identity_cluster: eu-id, clinical_cluster: eu-clin}
//	residency:                     # required with more than one region
//	  table: patients              # a subject table
//	  column: state                # its column that decides the home region
//	  values: {Stockholm: eu}      # column value -> region
//	  default: us                  # every other value, and NULL
//	  on_region_change: move       # or refuse
//	unclassified: clinical         # class of subject columns the policy does not list
//	subjects:                      # one row per data subject
//	  patients:                    # or schema.table
//	    key: id
//	    identity: [ssn, first, last]
//	    clinical: [marital]
//	    other: [created_at]        # stored with the unclassified side, not access-controlled
//	    masks: {ssn: last4}        # redact, partial, last4, initial, year, hash
//	children:                      # clinical facts about a subject
//	  encounters:
//	    subject: {table: patients, column: patient}
//	    other: [organization]
//	roles:
//	  analyst:
//	    pg_role: analyst           # default: the role's name
//	    identity: none             # full, masked or none (default none)
//	    clinical: full
//	transfers:                     # what may be read across regions; default: nothing
//	  eu_research_in_us:           # a name, for audit records
//	    from: eu                   # the subjects' home region
//	    to: us                     # the region of the session that reads
//	    roles: [analyst]           # policy roles
//	    purposes: [research]       # values of privata.purpose; default: any
//	    classes: [clinical]        # clinical (pseudonymised) and/or identity
//	    basis: scc                 # adequacy, scc, bcr, code_of_conduct, certification,
//	                               # consent or derogation
//
// Decoding is strict: unknown keys, duplicate keys, a column classified twice,
// a child table whose subject is unknown, a region without a cluster, a
// transfer naming an unknown region or role, or a class the role may not
// read at home, are errors. Every error carries file:line:column and a
// hint; Load reports all of them at once as an ErrorList. CheckDatabase
// then compares the policy with a database's catalog.
//
// Several files may be given; they are merged in order, and a table, region
// or role defined in two of them is an error.
package policy
