package storage

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/privata/privata/policy"
)

// setup returns the steps that prepare the cluster for split tables: roles,
// schemas, the settings row, the residency function and role memberships.
// Each part appears only when the catalog differs from what the policy
// implies.
func (pl *planner) setup() ([]Step, error) {
	var steps []Step
	add := func(comment, sql string) {
		if sql != "" {
			steps = append(steps, Step{Comment: comment, SQL: sql})
		}
	}
	roles, err := pl.roles()
	if err != nil {
		return nil, err
	}
	add("Roles. "+Owner+" (no login, not a superuser) owns every derived object, so that "+
		"forced row-level security binds it too. Membership in the four group roles "+
		"privata_{identity,clinical}_{full,masked} is what the access views and the base "+
		"tables' grants look at. Missing policy roles are created without login.", roles)
	add(fmt.Sprintf("Schemas for the base tables (%s, %s) and the access views (%s), owned by %s. "+
		"Policy roles may look names up in them; what they may read is granted per table.",
		IdentitySchema, ClinicalSchema, AccessSchema, Owner), pl.schemas())
	add("Which home regions this cluster serves; row-level security refuses identity rows of "+
		"other regions.", pl.settings())
	add("privata.region_of(value) computes a subject's home region: "+pl.residencyRule()+".",
		pl.regionOf())
	add("Role memberships: each policy role is a member of exactly the group roles its access "+
		"implies.", pl.memberships())
	return steps, nil
}

func (pl *planner) residencyRule() string {
	if r := pl.p.Residency; r != nil {
		return fmt.Sprintf("the policy's residency rule maps the value of %s.%s to a region, "+
			"%s when it names none", r.Table, r.Column, r.Default)
	}
	return "the policy has no residency rule, so every subject lives in " + pl.p.DefaultRegion()
}

func (pl *planner) roles() (string, error) {
	var b strings.Builder
	cat := pl.cat
	if r := cat.Roles[Owner]; r == nil {
		fmt.Fprintf(&b, "CREATE ROLE %s NOLOGIN NOSUPERUSER NOINHERIT;\n", ident(Owner))
	} else if r.Super || r.Login {
		fmt.Fprintf(&b, "ALTER ROLE %s NOLOGIN NOSUPERUSER;\n", ident(Owner))
	}
	for _, g := range groupRoles {
		if cat.Roles[g] == nil {
			fmt.Fprintf(&b, "CREATE ROLE %s NOLOGIN;\n", ident(g))
		}
	}
	for _, r := range policyRoles(pl.p) {
		if cat.Roles[r] == nil {
			fmt.Fprintf(&b, "CREATE ROLE %s NOLOGIN;\n", ident(r))
		}
	}
	if !cat.OwnerReadsSecrets {
		fmt.Fprintf(&b, "GRANT SELECT ON privata.secrets TO %s;\n", ident(Owner))
	}
	if s := pl.t.Session; s != "" {
		r := cat.Roles[s]
		switch {
		case r == nil:
			return "", fmt.Errorf("the session_url user %s does not exist", s)
		case r.Super:
			return "", fmt.Errorf("the session_url user %s is a superuser: row-level security "+
				"and masking do not bind superusers; give Privata's session login an ordinary role", s)
		}
		if r.Inherit {
			fmt.Fprintf(&b, "-- The session login gets a policy role's access only once it sets that role.\n")
			fmt.Fprintf(&b, "ALTER ROLE %s NOINHERIT;\n", ident(s))
		}
		var missing []string
		for _, pr := range policyRoles(pl.p) {
			if !slices.Contains(r.MemberOf, pr) {
				missing = append(missing, pr)
			}
		}
		if len(missing) > 0 {
			fmt.Fprintf(&b, "GRANT %s TO %s;\n", idents(missing), ident(s))
		}
	}
	return b.String(), nil
}

func (pl *planner) schemas() string {
	var b strings.Builder
	for _, s := range []string{IdentitySchema, ClinicalSchema, AccessSchema} {
		switch owner, ok := pl.cat.SchemaOwners[s]; {
		case !ok:
			fmt.Fprintf(&b, "CREATE SCHEMA %s AUTHORIZATION %s;\n", ident(s), ident(Owner))
		case owner != Owner:
			fmt.Fprintf(&b, "ALTER SCHEMA %s OWNER TO %s;\n", ident(s), ident(Owner))
		}
		var missing []string
		for _, r := range policyRoles(pl.p) {
			if !pl.cat.SchemaUsage[s][r] {
				missing = append(missing, r)
			}
		}
		if len(missing) > 0 {
			fmt.Fprintf(&b, "GRANT USAGE ON SCHEMA %s TO %s;\n", ident(s), idents(missing))
		}
	}
	return b.String()
}

func (pl *planner) settings() string {
	want := Settings{Cluster: pl.t.Name, Regions: slices.Sorted(slices.Values(pl.t.Regions)),
		DefaultRegion: pl.p.DefaultRegion()}
	if s := pl.cat.Settings; s != nil && s.Cluster == want.Cluster &&
		slices.Equal(s.Regions, want.Regions) && s.DefaultRegion == want.DefaultRegion {
		return ""
	}
	return fmt.Sprintf("INSERT INTO privata.settings (cluster, regions, default_region)\n"+
		"VALUES (%s, %s, %s)\nON CONFLICT (one) DO UPDATE SET cluster = EXCLUDED.cluster,\n"+
		"    regions = EXCLUDED.regions, default_region = EXCLUDED.default_region;\n",
		literal(want.Cluster), textArray(want.Regions), literal(want.DefaultRegion))
}

// regionOfBody is the body of privata.region_of(text).
func (pl *planner) regionOfBody() string {
	def := literal(pl.p.DefaultRegion())
	r := pl.p.Residency
	if r == nil || len(r.Values) == 0 {
		return "SELECT " + def + "::text"
	}
	var b strings.Builder
	b.WriteString("SELECT CASE value")
	for _, v := range slices.Sorted(maps.Keys(r.Values)) {
		fmt.Fprintf(&b, "\n    WHEN %s THEN %s", literal(v), literal(r.Values[v]))
	}
	fmt.Fprintf(&b, "\n    ELSE %s END::text", def)
	return b.String()
}

func (pl *planner) regionOf() string {
	body := pl.regionOfBody()
	if strings.TrimSpace(pl.cat.RegionOf) == body {
		return ""
	}
	return fmt.Sprintf("CREATE OR REPLACE FUNCTION privata.region_of(value text) RETURNS text\n"+
		"    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS %s;\n", dollarQuote(body))
}

func (pl *planner) memberships() string {
	var b strings.Builder
	for _, g := range groupRoles {
		var want []string
		for _, r := range pl.p.Roles {
			for _, c := range []policy.Class{policy.Identity, policy.Clinical} {
				if GroupRole(c, r.AccessTo(c)) == g {
					want = append(want, r.PGRole)
				}
			}
		}
		slices.Sort(want)
		have := pl.cat.Members[g]
		var grant, revoke []string
		for _, r := range want {
			if !slices.Contains(have, r) {
				grant = append(grant, r)
			}
		}
		for _, r := range have {
			// Package fdw keeps the export roles' memberships.
			if !slices.Contains(want, r) && !strings.HasPrefix(r, ExportRolePrefix) {
				revoke = append(revoke, r)
			}
		}
		if len(grant) > 0 {
			fmt.Fprintf(&b, "GRANT %s TO %s;\n", ident(g), idents(grant))
		}
		if len(revoke) > 0 {
			fmt.Fprintf(&b, "REVOKE %s FROM %s;\n", ident(g), idents(revoke))
		}
	}
	return b.String()
}
