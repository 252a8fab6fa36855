package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Basis is the legal basis of a transfer of personal data out of its
// subjects' home region (GDPR chapter V).
type Basis string

// The legal bases a transfer may name.
const (
	Adequacy      Basis = "adequacy"        // an adequacy decision (art. 45)
	SCC           Basis = "scc"             // standard contractual clauses (art. 46(2)(c))
	BCR           Basis = "bcr"             // binding corporate rules (art. 47)
	CodeOfConduct Basis = "code_of_conduct" // an approved code of conduct (art. 46(2)(e))
	Certification Basis = "certification"   // an approved certification (art. 46(2)(f))
	Consent       Basis = "consent"         // the subject's explicit consent (art. 49(1)(a))
	Derogation    Basis = "derogation"      // another derogation of art. 49
)

// Bases lists the legal bases in the order the README gives them.
var Bases = []Basis{Adequacy, SCC, BCR, CodeOfConduct, Certification, Consent, Derogation}

// Transfer lets policy roles, acting for given purposes, read classes of
// data of subjects whose home region is From, from a session in region To.
// Without a transfer nothing crosses: not even pseudonymised clinical data.
type Transfer struct {
	// Name identifies the transfer in audit records.
	Name     string
	From, To string
	// Roles are policy role names.
	Roles []string
	// Purposes are the values of privata.purpose the transfer serves;
	// empty means any purpose, none set included.
	Purposes []string
	// Classes are Identity and/or Clinical. Identity data crosses only
	// with Identity; Other columns travel with the clinical data.
	Classes []Class
	Basis   Basis
	Pos     Pos
}

// Covers reports whether the transfer lets policy role role, acting for
// purpose, read class c.
func (t *Transfer) Covers(role, purpose string, c Class) bool {
	if c == Other {
		c = Clinical
	}
	if !slices.Contains(t.Roles, role) || !slices.Contains(t.Classes, c) {
		return false
	}
	return len(t.Purposes) == 0 || slices.Contains(t.Purposes, purpose)
}

// TransferFor returns the first transfer that lets policy role role, acting
// for purpose, read class c of the data of subjects of region from in a
// session of region to; nil when there is none. Data of a region's own
// subjects needs no transfer: for from == to it returns nil.
func (p *Policy) TransferFor(from, to, role, purpose string, c Class) *Transfer {
	for _, t := range p.Transfers {
		if t.From == from && t.To == to && t.Covers(role, purpose, c) {
			return t
		}
	}
	return nil
}

// TransfersBetween returns the transfers from region from to region to, in
// file order.
func (p *Policy) TransfersBetween(from, to string) []*Transfer {
	var out []*Transfer
	for _, t := range p.Transfers {
		if t.From == from && t.To == to {
			out = append(out, t)
		}
	}
	return out
}

func (b *builder) addTransfers(file string, transfers entries[transferDoc]) {
	for _, e := range transfers {
		pos := at(file, e.Key)
		if t := b.p.transfer(e.Key.Value); t != nil {
			b.errs.add(pos, "give each transfer its own name",
				"transfer %q is defined twice (first at %s)", e.Key.Value, t.Pos)
			continue
		}
		t := &Transfer{Name: e.Key.Value, Pos: pos}
		b.transferDocs[t] = e.Value
		b.p.Transfers = append(b.p.Transfers, t)
	}
}

func (p *Policy) transfer(name string) *Transfer {
	for _, t := range p.Transfers {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// checkTransfers fills in each transfer from its document, once regions
// and roles of every file are known, and reports what is wrong with it.
func (b *builder) checkTransfers() {
	for _, t := range b.p.Transfers {
		d := b.transferDocs[t]
		file := t.Pos.File
		region := func(s *scalar, key string) string {
			switch {
			case s == nil:
				b.errs.add(t.Pos, "a transfer names the subjects' home region (from) and the "+
					"reading session's region (to)", "transfer %s: missing %s", t.Name, key)
			case b.p.Region(s.Value) == nil:
				b.errs.add(at(file, *s), "regions are: "+strings.Join(regionNames(b.p), ", "),
					"transfer %s: unknown region %q", t.Name, s.Value)
			default:
				return s.Value
			}
			return ""
		}
		t.From, t.To = region(d.From, "from"), region(d.To, "to")
		if t.From != "" && t.From == t.To {
			b.errs.add(at(file, *d.To), "a region's own sessions read its subjects without a transfer",
				"transfer %s goes from region %s to itself", t.Name, t.From)
		}
		b.transferClasses(t, d)
		b.transferRoles(t, d)
		seen := map[string]bool{}
		for _, s := range d.Purposes {
			switch {
			case s.Value == "":
				b.errs.add(at(file, s), "leave purposes out to allow every purpose",
					"transfer %s: empty purpose", t.Name)
			case seen[s.Value]:
				b.errs.add(at(file, s), "", "transfer %s names purpose %q twice", t.Name, s.Value)
			default:
				t.Purposes = append(t.Purposes, s.Value)
			}
			seen[s.Value] = true
		}
		names := make([]string, len(Bases))
		for i, basis := range Bases {
			names[i] = string(basis)
		}
		switch {
		case d.Basis == nil:
			b.errs.add(t.Pos, "name the legal basis, one of: "+strings.Join(names, ", "),
				"transfer %s has no basis", t.Name)
		case !slices.Contains(Bases, Basis(d.Basis.Value)):
			b.errs.add(at(file, *d.Basis), "bases are: "+strings.Join(names, ", "),
				"transfer %s: unknown basis %q", t.Name, d.Basis.Value)
		default:
			t.Basis = Basis(d.Basis.Value)
		}
	}
}

func (b *builder) transferClasses(t *Transfer, d transferDoc) {
	if len(d.Classes) == 0 {
		b.errs.add(t.Pos, "say which data may cross, e.g. `classes: [clinical]`",
			"transfer %s names no classes", t.Name)
	}
	for _, s := range d.Classes {
		c := Class(s.Value)
		switch {
		case c != Identity && c != Clinical:
			b.errs.add(at(t.Pos.File, s), "classes are identity and clinical; other columns "+
				"travel with the clinical data", "transfer %s: unknown class %q", t.Name, s.Value)
		case slices.Contains(t.Classes, c):
			b.errs.add(at(t.Pos.File, s), "", "transfer %s names class %s twice", t.Name, c)
		default:
			t.Classes = append(t.Classes, c)
		}
	}
}

func (b *builder) transferRoles(t *Transfer, d transferDoc) {
	if len(d.Roles) == 0 {
		b.errs.add(t.Pos, "name the policy roles that may read across, e.g. `roles: [analyst]`",
			"transfer %s names no roles", t.Name)
	}
	for _, s := range d.Roles {
		pos := at(t.Pos.File, s)
		r := b.p.Role(s.Value)
		switch {
		case r == nil:
			b.errs.add(pos, "declare it under roles:, or fix the name",
				"transfer %s names role %q, which the policy does not define", t.Name, s.Value)
			continue
		case slices.Contains(t.Roles, r.Name):
			b.errs.add(pos, "", "transfer %s names role %s twice", t.Name, r.Name)
			continue
		}
		t.Roles = append(t.Roles, r.Name)
		for _, c := range t.Classes {
			if r.AccessTo(c) == None {
				b.errs.add(pos, fmt.Sprintf("give %s %s access, or take %s out of the transfer's classes",
					r.Name, c, c), "transfer %s lets role %s read %s data of region %s, "+
					"but the role's %s access is none", t.Name, r.Name, c, t.From, c)
			}
		}
	}
}
