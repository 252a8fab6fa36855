package storage_test

import (
	"regexp"
	"strings"
	"testing"
)

// Each case is a database that plan must refuse to convert, with the
// error it must give. Apply must then change nothing.
func TestRefusesWhatItCannotConvertFaithfully(t *testing.T) {
	for _, c := range []struct {
		name   string
		setup  string // SQL run after smallSchema
		policy func(string) string
		want   string // regexp the error matches
	}{
		{name: "foreign key from an unclassified table",
			setup: `CREATE TABLE invoices (person int REFERENCES people, amount numeric)`,
			want:  `policy.yaml:5:3: public.people: foreign key invoices_person_fkey of "public"."invoices" refers to .*\n\thint: classify the referring table as a child`},
		{name: "check spanning identity and clinical columns",
			setup: `ALTER TABLE people ADD CONSTRAINT named CHECK (name IS NOT NULL OR note IS NOT NULL)`,
			want:  `constraint named spans identity and clinical columns \(name, note\)`},
		{name: "index spanning identity and clinical columns",
			setup: `CREATE INDEX name_blood ON people (name, blood)`,
			want:  `index name_blood spans identity and clinical columns`},
		{name: "user trigger",
			setup: `CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
				CREATE TRIGGER audit BEFORE UPDATE ON visits FOR EACH ROW EXECUTE FUNCTION public.noop()`,
			want: `public.visits has triggers \(audit\); they would not fire on the base tables\n\thint: drop them first`},
		{name: "rule",
			setup: `CREATE RULE no_delete AS ON DELETE TO findings DO INSTEAD NOTHING`,
			want:  `public.findings has rules \(no_delete\)`},
		{name: "dependent view",
			setup: `CREATE VIEW public.recent AS SELECT * FROM visits`,
			want:  `^policy.yaml:12:3: public.visits: views depend on public.visits: public.recent\n\thint: drop them, apply, then create them again over the new view$`},
		{name: "rows of a region the cluster does not serve",
			policy: func(p string) string {
				return strings.Replace(p, "regions: {us: {cluster: us}}", `regions: {us: {cluster: us}, eu: {cluster: eu}}
residency: {table: people, column: blood, values: {O: eu}, default: us}`, 1)
			},
			want: `1 rows have a home region \(eu\) that cluster test does not serve`},
		{name: "child rows that name no subject",
			setup: `ALTER TABLE findings DROP CONSTRAINT findings_person_fkey; INSERT INTO findings VALUES (99, NULL, 'x', NULL)`,
			want:  `1 rows have a person that names no row of public.people`},
		{name: "generated column",
			setup: `ALTER TABLE visits ADD COLUMN doubled numeric GENERATED ALWAYS AS (cost * 2) STORED`,
			want:  `column visits.doubled is a generated column`},
		{name: "subject key that is not the primary key",
			setup: `ALTER TABLE visits DROP CONSTRAINT visits_person_fkey; ALTER TABLE findings DROP CONSTRAINT findings_person_fkey;
				ALTER TABLE people DROP CONSTRAINT people_pkey CASCADE; ALTER TABLE people ADD PRIMARY KEY (ssn)`,
			want: `the primary key of public.people is \(ssn\), not the key id`},
		{name: "a policy column the table does not have",
			policy: func(p string) string { return strings.Replace(p, "[blood, note]", "[blood, note, weight]", 1) },
			want:   `^policy.yaml:8:29: column people.weight does not exist in the database\n\thint: columns of people: id, ssn`},
		{name: "a mask the column's type cannot take",
			policy: func(p string) string { return strings.Replace(p, "{ssn: last4}", "{born: last4}", 1) },
			want:   `^policy.yaml:10:19: mask last4 does not apply to people.born, of type date\n\thint: masks for this column: year, redact$`},
		{name: "a classified table that is already a view",
			setup: `CREATE VIEW extra AS SELECT 1 AS person`,
			policy: func(p string) string {
				return strings.Replace(p, "roles:", "  extra: {subject: {table: people, column: person}}\nroles:", 1)
			},
			want: `public.extra is a view, not a plain table`},
		{name: "a region with split clusters",
			policy: func(p string) string {
				return strings.Replace(p, "{us: {cluster: us}}", "{us: {identity_cluster: a, clinical_cluster: b}}", 1)
			},
			want: `policy.yaml:3:\d+: region us keeps identity and clinical data in different clusters`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDB(t)
			d.exec(t, smallSchema)
			if c.setup != "" {
				d.exec(t, c.setup)
			}
			p := smallPolicy
			if c.policy != nil {
				p = c.policy(p)
			}
			before := d.dump(t)
			_, err := d.tryApply(t, parsePolicy(t, p))
			if err == nil {
				t.Fatalf("apply succeeded; want an error matching %q", c.want)
			}
			if !regexp.MustCompile(c.want).MatchString(err.Error()) {
				t.Fatalf("error:\n%v\nwant it to match:\n%s", err, c.want)
			}
			if after := d.dump(t); after != before {
				t.Fatalf("a refused apply changed the database:\n%s", diff(before, after))
			}
		})
	}
}
