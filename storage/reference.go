package storage

import (
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A child's reference column is stored as its subject's pseudonym, one
// pseudonym per subject: a unique or primary key constraint, or an index,
// that lists the reference column among its columns enforces or serves the
// same on the pseudonym. Adoption recreates them so, under the
// application's names, as DDL through Privata does (package rewrite, with
// RenameReference).

// onPseudonym returns constraint k of a child whose reference column is
// ref as it is recreated on the clinical base table: k itself when it does
// not name the column, else a unique or primary key constraint on the
// pseudonym. Other constraints that name it are refused.
func onPseudonym(k *Constraint, ref string) (*Constraint, error) {
	const prefix = "ALTER TABLE t ADD CONSTRAINT k "
	tree, err := pg.Parse(prefix + k.Def)
	if err != nil {
		return nil, fmt.Errorf("constraint %s: %w", k.Name, err)
	}
	before, err := pg.Deparse(tree)
	inExpr := RenameReference(tree.ProtoReflect(), ref)
	def, err2 := pg.Deparse(tree)
	if err != nil || err2 != nil || !strings.HasPrefix(def, prefix) {
		return nil, fmt.Errorf("constraint %s: cannot print %q on the pseudonym", k.Name, k.Def)
	}
	if !inExpr && def == before {
		return k, nil
	}
	if inExpr || (k.Type != "p" && k.Type != "u") {
		return nil, fmt.Errorf("constraint %s names the reference column %s, which the pseudonym that "+
			"stores it stands for only in a unique or primary key constraint", k.Name, ref)
	}
	out := *k
	out.Def = strings.TrimPrefix(def, prefix)
	out.Columns = replaced(k.Columns, ref, PseudonymColumn)
	return &out, nil
}

// indexOnPseudonym returns index ix of a child whose reference column is
// ref, as it is recreated on the clinical base table; plain says it is a
// btree index led by the pseudonym, without a condition, which serves the
// lookups of a subject's rows.
func indexOnPseudonym(ix *Index, ref string) (out *Index, plain bool, err error) {
	tree, err := pg.Parse(ix.Def)
	if err != nil {
		return nil, false, fmt.Errorf("index %s: %w", ix.Name, err)
	}
	stmt := tree.Stmts[0].Stmt.GetIndexStmt()
	if stmt == nil {
		return nil, false, fmt.Errorf("index %s: %q is not CREATE INDEX", ix.Name, ix.Def)
	}
	if RenameReference(tree.ProtoReflect(), ref) {
		return nil, false, fmt.Errorf("index %s names the reference column %s in an expression or its "+
			"condition, where the pseudonym that stores it cannot stand for it", ix.Name, ref)
	}
	def, err := pg.Deparse(tree)
	if err != nil {
		return nil, false, fmt.Errorf("index %s: %w", ix.Name, err)
	}
	o := *ix
	o.Def = def
	o.Columns = replaced(ix.Columns, ref, PseudonymColumn)
	o.Keys = replaced(ix.Keys, ref, PseudonymColumn)
	first := stmt.IndexParams[0].GetIndexElem()
	plain = stmt.AccessMethod == "btree" && stmt.WhereClause == nil &&
		first.GetName() == PseudonymColumn
	return &o, plain, nil
}

// RenameReference renames a child's reference column ref to the
// pseudonym that stores it where a statement's tree lists it as a column
// (an index's keys, a constraint's) or tests it for NULL (the pseudonym is
// NULL where it is). inExpr says that another expression names it, which
// it leaves alone: there the pseudonym, of another type and with other
// values, cannot stand for it.
func RenameReference(m protoreflect.Message, ref string) (inExpr bool) {
	return RenameColumn(m, ref, PseudonymColumn)
}

// conditionOnView prints a child's index condition, pred, as T's rows read
// it: with its reference column ref where the base table has the
// pseudonym. ok is false when the pseudonym is in another expression.
func conditionOnView(pred, ref string) (string, bool) {
	const prefix = "SELECT WHERE "
	tree, err := pg.Parse(prefix + pred)
	if err != nil || RenameColumn(tree.ProtoReflect(), PseudonymColumn, ref) {
		return "", false
	}
	out, err := pg.Deparse(tree)
	if err != nil || !strings.HasPrefix(out, prefix) {
		return "", false
	}
	return strings.TrimPrefix(out, prefix), true
}

// RenameColumn is RenameReference from column from to column to; package
// rewrite also renames the pseudonym back.
func RenameColumn(m protoreflect.Message, from, to string) (inExpr bool) {
	names := func(n *pg.Node) bool { return n.GetString_().GetSval() == from }
	switch n := m.Interface().(type) {
	case *pg.IndexElem:
		if cr := n.Expr.GetColumnRef(); cr != nil && len(cr.Fields) == 1 && names(cr.Fields[0]) {
			n.Name, n.Expr = from, nil // (column) is the column, as PostgreSQL reads it
		}
		if n.Name == from {
			// The operator class and collation the application chose are
			// its type's; the pseudonym (a uuid) takes its own defaults.
			n.Name, n.Opclass, n.Opclassopts, n.Collation = to, nil, nil, nil
		}
	case *pg.NullTest:
		if cr := n.Arg.GetColumnRef(); cr != nil && len(cr.Fields) == 1 && names(cr.Fields[0]) {
			cr.Fields[0] = pg.MakeStrNode(to)
			return false
		}
	case *pg.ColumnRef:
		return names(n.Fields[len(n.Fields)-1])
	case *pg.Constraint:
		for _, list := range [][]*pg.Node{n.Keys, n.Including} {
			for i, k := range list {
				if names(k) {
					list[i] = pg.MakeStrNode(to)
				}
			}
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				inExpr = RenameColumn(v.List().Get(i).Message(), from, to) || inExpr
			}
		default:
			inExpr = RenameColumn(v.Message(), from, to) || inExpr
		}
		return true
	})
	return inExpr
}

// replaced returns names with from replaced by to.
func replaced(names []string, from, to string) []string {
	out := slices.Clone(names)
	for i, n := range out {
		if n == from {
			out[i] = to
		}
	}
	return out
}
