package fdw

import (
	"slices"
	"strings"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/rewrite"
)

// Crossing is a read of another region's data that a statement makes
// through Privata's cross-region views or foreign tables. The proxy checks
// each against the policy's transfers (policy.TransferFor) and audits it
// as a transfer.
type Crossing struct {
	// Region is the home region of the subjects read.
	Region string
	// Table is the classified table read.
	Table *policy.Table
	// Classes are the classes of data read: always Clinical (rows of the
	// region's subjects), and Identity when an identity column (or the
	// subject's key, or every column) is read.
	Classes []policy.Class
	// Relation is the relation as the statement names it.
	Relation string
}

// Crossings returns the cross-region reads statement st makes in a session
// of region session whose search_path is searchPath: every reference to a
// view of privata_global (every region the session's cluster does not
// serve) or to a foreign table of privata_region_<r> (the regions of that
// cluster). An unqualified name counts when a schema of the path could
// hold it.
func (t *Topology) Crossings(st *rewrite.Statement, session string, searchPath []string) []Crossing {
	local := t.PeerOf(session)
	var out []Crossing
	for i, rel := range st.Relations {
		if rel.Function {
			continue
		}
		schemas := []string{rel.Schema}
		if rel.Schema == "" {
			schemas = searchPath
		}
		tab := t.tableNamed(rel.Name)
		if tab == nil {
			continue
		}
		for _, s := range schemas {
			var regions []string
			switch peer := t.PeerBySchema(s); {
			case s == GlobalSchema:
				for _, p := range t.Others(local) {
					regions = append(regions, p.Target.Regions...)
				}
			case peer != nil && peer != local:
				regions = peer.Target.Regions
			}
			for _, r := range regions {
				out = append(out, Crossing{Region: r, Table: tab, Classes: classesRead(st, i, tab),
					Relation: rel.QualifiedName()})
			}
		}
	}
	return out
}

// tableNamed returns the classified table whose views and foreign tables
// are called name (Privata's schemas hold one of each table name).
func (t *Topology) tableNamed(name string) *policy.Table {
	for _, tab := range t.Policy.Tables {
		if tab.Name == name {
			return tab
		}
	}
	return nil
}

// classesRead are the classes of data statement st reads of relation i,
// table tab.
func classesRead(st *rewrite.Statement, i int, tab *policy.Table) []policy.Class {
	out := []policy.Class{policy.Clinical}
	identity := func(name string) bool {
		if tab.Kind == policy.Subject && name == tab.Key {
			return true
		}
		return tab.ClassOf(name) == policy.Identity
	}
	for _, c := range st.Columns {
		mine := c.Relation == i || c.Relation < 0 && slices.Contains(c.Candidates, i)
		if !mine {
			continue
		}
		if c.Star && tab.Kind == policy.Subject || !c.Star && identity(strings.ToLower(c.Name)) {
			return append(out, policy.Identity)
		}
	}
	return out
}
