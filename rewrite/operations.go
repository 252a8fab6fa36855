package rewrite

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v5"

	"github.com/privata/privata/storage"
)

// Operation is something a statement does to a relation that PostgreSQL
// does differently, or not at all, when the relation is a split table's
// view: an upsert, COPY TO, TRUNCATE, a lock, a grant. Decide judges each
// one on a classified table (classified.go); the rest of a statement's
// access is in Relations and Columns.
type Operation struct {
	// Relation is the index in Statement.Relations of the relation
	// operated on, or -1 for an operation on every table (a publication
	// FOR ALL TABLES, a subscription).
	Relation int
	What     OperationKind
	// Nested is set for an operation inside a DO block or in SQL text
	// that a statement runs, where Privata cannot rewrite it.
	Nested bool
}

// OperationKind names an operation; its text is fit for a message
// ("TRUNCATE").
type OperationKind string

// The operations Analyze records.
const (
	OpUpsert       OperationKind = "INSERT ... ON CONFLICT"
	OpMerge        OperationKind = "MERGE"
	OpCopyTo       OperationKind = "COPY ... TO"
	OpCopyFrom     OperationKind = "COPY ... FROM"
	OpTruncate     OperationKind = "TRUNCATE"
	OpCurrentOf    OperationKind = "UPDATE or DELETE ... WHERE CURRENT OF"
	OpLock         OperationKind = "LOCK TABLE"
	OpCluster      OperationKind = "CLUSTER"
	OpReindex      OperationKind = "REINDEX"
	OpGrant        OperationKind = "GRANT or REVOKE"
	OpView         OperationKind = "CREATE VIEW"
	OpMatView      OperationKind = "CREATE MATERIALIZED VIEW"
	OpTableAs      OperationKind = "CREATE TABLE AS or SELECT INTO"
	OpPrepare      OperationKind = "PREPARE"
	OpFunction     OperationKind = "a function or procedure that reads it"
	OpBodyDDL      OperationKind = "DDL in a DO block or a function body"
	OpRowLock      OperationKind = "SELECT ... FOR UPDATE or FOR SHARE"
	OpPublication  OperationKind = "a publication"
	OpSubscription OperationKind = "a subscription"
)

// accessShareLock is LockStmt.Mode for LOCK ... IN ACCESS SHARE MODE.
const accessShareLock = 1

// operation records an operation on relation rel.
func (w *walker) operation(rel int, what OperationKind) {
	w.st.Operations = append(w.st.Operations,
		Operation{Relation: rel, What: what, Nested: w.nesting > 0})
}

// operationOn records an operation on the relation rv names, which the
// walk recorded at index first or later.
func (w *walker) operationOn(first int, rv *pg.RangeVar, what OperationKind) {
	if rv == nil {
		return
	}
	for i := first; i < len(w.st.Relations); i++ {
		r := w.st.Relations[i]
		if !r.Function && r.Name == rv.Relname && r.Schema == rv.Schemaname {
			w.operation(i, what)
			return
		}
	}
	w.operation(w.relation(rv, Write), what)
}

// readsSince records an operation on each relation that the walk since
// index first recorded as read (the query of CREATE VIEW).
func (w *walker) readsSince(first int, what OperationKind) { w.accessedSince(first, Read, what) }

// accessedSince records an operation on each relation that the walk since
// index first recorded with access a.
func (w *walker) accessedSince(first int, a Access, what OperationKind) {
	for i := first; i < len(w.st.Relations); i++ {
		if r := w.st.Relations[i]; !r.Function && r.Access&a != 0 {
			w.operation(i, what)
		}
	}
}

// lockedSince records a row lock on each relation that the walk since
// index first recorded and that locking clauses lock: those they name
// (FOR UPDATE OF t), or every one read.
func (w *walker) lockedSince(first int, clauses []*pg.Node) {
	var named []string
	all := false
	for _, c := range clauses {
		lc := c.GetLockingClause()
		if lc == nil || len(lc.LockedRels) == 0 {
			all = true
			continue
		}
		for _, r := range lc.LockedRels {
			if rv := r.GetRangeVar(); rv != nil {
				named = append(named, rv.Relname)
			}
		}
	}
	for i := first; i < len(w.st.Relations); i++ {
		r := w.st.Relations[i]
		if r.Function || r.Access&Read == 0 {
			continue
		}
		if all || slices.Contains(named, r.Name) || r.Alias != "" && slices.Contains(named, r.Alias) {
			w.operation(i, OpRowLock)
		}
	}
}

// utilityOperations records the operations of a statement that the
// generic walk has just walked, whose relations it recorded from index
// first on.
func (w *walker) utilityOperations(n *pg.Node, first int) {
	switch s := n.Node.(type) {
	case *pg.Node_TruncateStmt:
		for _, r := range s.TruncateStmt.Relations {
			w.operationOn(first, r.GetRangeVar(), OpTruncate)
		}
	case *pg.Node_LockStmt:
		if s.LockStmt.Mode == accessShareLock {
			return // what SELECT takes, and all a split table's readers may take
		}
		for _, r := range s.LockStmt.Relations {
			w.operationOn(first, r.GetRangeVar(), OpLock)
		}
	case *pg.Node_ClusterStmt:
		w.operationOn(first, s.ClusterStmt.Relation, OpCluster)
	case *pg.Node_ReindexStmt:
		w.operationOn(first, s.ReindexStmt.Relation, OpReindex)
	case *pg.Node_GrantStmt:
		g := s.GrantStmt
		if g.Targtype == pg.GrantTargetType_ACL_TARGET_OBJECT && isRelationType(g.Objtype) {
			for _, o := range g.Objects {
				w.operationOn(first, o.GetRangeVar(), OpGrant)
			}
		}
	case *pg.Node_CreatePublicationStmt:
		w.publication(first, s.CreatePublicationStmt.ForAllTables, s.CreatePublicationStmt.Pubobjects)
	case *pg.Node_AlterPublicationStmt:
		w.publication(first, s.AlterPublicationStmt.ForAllTables, s.AlterPublicationStmt.Pubobjects)
	case *pg.Node_CreateSubscriptionStmt, *pg.Node_AlterSubscriptionStmt:
		w.operation(-1, OpSubscription)
	}
}

// publication records the tables a publication names. FOR ALL TABLES and
// FOR TABLES IN SCHEMA of Privata's schemas publish the base tables of
// every split table: an operation on all of them.
func (w *walker) publication(first int, all bool, objects []*pg.Node) {
	if all {
		w.operation(-1, OpPublication)
	}
	for _, o := range objects {
		spec := o.GetPublicationObjSpec()
		switch {
		case spec == nil:
		case spec.Pubtable != nil:
			w.operationOn(first, spec.Pubtable.Relation, OpPublication)
		case spec.Pubobjtype == pg.PublicationObjSpecType_PUBLICATIONOBJ_TABLES_IN_CUR_SCHEMA,
			spec.Pubobjtype == pg.PublicationObjSpecType_PUBLICATIONOBJ_TABLES_IN_SCHEMA &&
				privataSchema(spec.Name):
			w.operation(-1, OpPublication)
		}
	}
}

// privataSchema reports whether a schema holds Privata's own objects.
func privataSchema(name string) bool {
	switch name {
	case storage.IdentitySchema, storage.ClinicalSchema, storage.AccessSchema, "privata":
		return true
	}
	return false
}
