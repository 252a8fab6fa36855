package rewrite

import (
	"fmt"

	"github.com/privata/privata/policy"
)

// What Privata does with each operation on a classified table, whose
// application name is a view over split storage. This table, and the DDL
// decisions beside it, are the one place where statements on split tables
// are refused; classified_test.go goes through every statement kind.
//
// Allowed operations work through the views as they do on tables; those
// marked rewrite run in another form (Rewriter); the rest are refused with
// 0A000, a message that names the table and what is not supported, and a
// hint. An operation Privata would have to rewrite inside a DO block or in
// SQL text a statement runs (query_to_xml) is refused too.
var onClassified = map[OperationKind]verdict{
	// PostgreSQL refuses ON CONFLICT on a view with INSTEAD OF triggers
	// (and ignores it without a conflict target): see upsert.go.
	OpUpsert: {action: Rewrite},
	// PostgreSQL refuses COPY TO of a view: COPY (SELECT ...) TO.
	OpCopyTo: {action: Rewrite},
	// TRUNCATE of a view is refused: the base tables are truncated.
	OpTruncate: {action: Rewrite},
	// COPY FROM a view goes through its INSTEAD OF INSERT trigger.
	OpCopyFrom: {action: Allow},
	OpMerge:    {action: Refuse, hint: "Use INSERT ... ON CONFLICT, UPDATE or DELETE."},
	OpCurrentOf: {action: Refuse,
		hint: "Update or delete the row by its key (WHERE id = ...)."},
	// LOCK ... IN ACCESS SHARE MODE is not recorded: it is allowed.
	OpLock: {action: Refuse, hint: "Lock the rows with SELECT ... FOR UPDATE, or take ACCESS " +
		"SHARE MODE; the base tables' other locks are Privata's."},
	OpCluster: {action: Refuse, hint: "The data lives in base tables in schemas privata_identity " +
		"and privata_clinical; their owner may cluster them directly."},
	OpReindex: {action: Refuse, hint: "The data lives in base tables in schemas privata_identity " +
		"and privata_clinical; their owner may reindex them directly."},
	OpGrant: {action: Refuse, hint: "Who may read and write a split table follows the policy's " +
		"roles: change the policy and run privata apply."},
	OpView: {action: Refuse, hint: "Privata derives a split table's views again when the policy " +
		"or the table changes, which other views would block; query the table directly."},
	OpMatView: {action: Refuse, hint: "A materialized view would keep the values its owner reads " +
		"outside split storage, and block Privata from deriving the table's views again."},
	OpTableAs: {action: Refuse, hint: "A table made from a query keeps the values its owner reads " +
		"outside split storage, where the policy's masks, residency and audit no longer reach them."},
	OpPrepare: {action: Refuse, hint: "The rows of an EXECUTE would not be in the read audit: use " +
		"the protocol's prepared statements (Parse/Bind/Execute), as drivers do."},
	OpRowLock: {action: Refuse, hint: "A split table's view joins its base tables with an outer " +
		"join, whose rows PostgreSQL does not lock: lock the row with an UPDATE of it, or take an " +
		"advisory lock on its key."},
	OpBodyDDL: {action: Refuse, hint: "Send it as a statement of its own: Privata turns DDL on a " +
		"classified table into DDL on its split storage only then."},
	OpFunction: {action: Refuse, hint: "What a function returns when called is not in the read " +
		"audit, and it may return what it reads: query the table in the statement itself."},
	OpPublication: {action: Refuse, hint: "The base tables hold identity values in the clear; the " +
		"audit's change stream records changes to split tables."},
	OpSubscription: {action: Refuse, hint: "A subscription writes tables behind Privata's back: " +
		"manage it on the cluster directly."},
}

// verdict is what Privata does with an operation on a classified table.
type verdict struct {
	action Action
	hint   string
}

// decideOperations judges a statement's operations on classified tables:
// the first refusal wins; a statement with an operation to rewrite and no
// refusal is rewritten.
func decideOperations(st *Statement, c Classification) (Decision, bool) {
	rewrite := false
	for _, op := range st.Operations {
		var t *policy.Table
		if op.Relation >= 0 {
			if op.Relation < len(c.Derived) && c.Derived[op.Relation] != nil {
				// A cross-region view or foreign table: nothing is
				// rewritten onto it.
				if v, ok := onClassified[op.What]; ok && v.action != Allow {
					r := st.Relations[op.Relation]
					return refuseOperation(fmt.Sprintf("%s is not supported on %s.%s, which shows "+
						"the data of table %s", op.What, r.Schema, r.Name,
						c.Derived[op.Relation].QualifiedName()), v.hint), true
				}
				continue
			}
			if op.Relation >= len(c.Relations) || len(c.Relations[op.Relation]) == 0 {
				continue
			}
			t = c.Relations[op.Relation][0]
		}
		v, ok := onClassified[op.What]
		if !ok || v.action == Allow {
			continue
		}
		switch {
		case v.action == Refuse && t == nil:
			return refuseOperation(fmt.Sprintf("%s is not supported through Privata", op.What),
				v.hint), true
		case v.action == Refuse:
			return refuseOperation(fmt.Sprintf("%s is not supported on table %s, which Privata "+
				"splits into identity and clinical storage", op.What, t.QualifiedName()), v.hint), true
		case op.Nested:
			return refuseOperation(fmt.Sprintf("%s on table %s inside a DO block or in SQL text "+
				"that a statement runs is not supported: Privata rewrites it for split storage, and "+
				"cannot there", op.What, t.QualifiedName()), "Send the statement on its own."), true
		}
		rewrite = true
	}
	if rewrite {
		return Decision{Action: Rewrite}, true
	}
	return Decision{}, false
}

func refuseOperation(msg, hint string) Decision {
	return Decision{Action: Refuse, SQLState: CodeFeatureNotSupported, Message: msg, Hint: hint}
}
