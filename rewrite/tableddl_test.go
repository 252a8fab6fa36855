package rewrite

import (
	"strings"
	"testing"

	"github.com/privata/privata/policy"
)

// Base rewrites DDL on split tables onto the base tables that hold the
// columns; a child's reference column becomes its pseudonym.
func TestTableDDLOnBaseTables(t *testing.T) {
	p, err := policy.Parse("policy.yaml", []byte(splitPolicy))
	if err != nil {
		t.Fatal(err)
	}
	split := func(*policy.Table) bool { return true }
	held := func(name string) string {
		if name == "patients_ssn_key" {
			return "privata_identity"
		}
		return ""
	}
	cases := []struct{ sql, want string }{
		{`CREATE UNIQUE INDEX patients_ssn_key ON patients (ssn)`,
			`CREATE UNIQUE INDEX patients_ssn_key ON privata_identity.patients USING btree (ssn)`},
		{`CREATE INDEX ON patients (lower(note))`,
			`CREATE INDEX ON privata_clinical.patients USING btree (lower(note))`},
		{`CREATE INDEX e_patient ON encounters (patient, at) WHERE patient IS NOT NULL`,
			`CREATE INDEX e_patient ON privata_clinical.encounters USING btree (privata_pseudonym, at) ` +
				`WHERE privata_pseudonym IS NOT NULL`},
		{`ALTER TABLE patients ADD COLUMN phone text, ADD COLUMN email text UNIQUE`,
			`ALTER TABLE privata_clinical.patients ADD COLUMN phone text; ` +
				`ALTER TABLE privata_clinical.patients ADD COLUMN email text UNIQUE`},
		{`ALTER TABLE patients ALTER COLUMN first SET NOT NULL, ALTER COLUMN visits SET DEFAULT 0`,
			`ALTER TABLE privata_identity.patients ALTER COLUMN first SET NOT NULL; ` +
				`ALTER TABLE privata_clinical.patients ALTER COLUMN visits SET DEFAULT 0`},
		{`ALTER TABLE encounters ADD CONSTRAINT fk FOREIGN KEY (patient) REFERENCES patients (id) ON DELETE CASCADE`,
			`ALTER TABLE privata_clinical.encounters ADD CONSTRAINT fk FOREIGN KEY (privata_pseudonym) ` +
				`REFERENCES privata_clinical.patients (privata_pseudonym) ON DELETE CASCADE`},
		{`ALTER TABLE notes ADD CONSTRAINT fk FOREIGN KEY (enc) REFERENCES encounters (id)`,
			`ALTER TABLE privata_clinical.notes ADD CONSTRAINT fk FOREIGN KEY (enc) ` +
				`REFERENCES privata_clinical.encounters (id)`},
		{`ALTER TABLE patients ADD CONSTRAINT v CHECK (visits >= 0)`,
			`ALTER TABLE privata_clinical.patients ADD CONSTRAINT v CHECK (visits >= 0)`},
		{`ALTER TABLE patients DROP CONSTRAINT patients_ssn_key`,
			`ALTER TABLE privata_identity.patients DROP CONSTRAINT patients_ssn_key`},
		{`ALTER TABLE patients RENAME COLUMN extra TO more`,
			`ALTER TABLE privata_clinical.patients RENAME COLUMN extra TO more`},
		{`ALTER TABLE patients RENAME CONSTRAINT patients_ssn_key TO patients_ssn_unique`,
			`ALTER TABLE privata_identity.patients RENAME CONSTRAINT patients_ssn_key TO patients_ssn_unique`},
		{`COMMENT ON COLUMN patients.ssn IS 'national id'`,
			`COMMENT ON COLUMN privata_identity.patients.ssn IS 'national id'`},
		{`COMMENT ON TABLE patients IS 'people'`, `COMMENT ON VIEW public.patients IS 'people'`},
		// Refused: what spans identity and clinical columns.
		{`CREATE INDEX ON patients (ssn, visits)`, "0A000 index on table public.patients spans"},
		{`ALTER TABLE patients ADD CONSTRAINT c CHECK (first <> note)`, "0A000 ALTER TABLE of table " +
			"public.patients spans"},
		{`ALTER TABLE patients ALTER COLUMN id TYPE bigint`, "0A000 changing the key"},
		{`ALTER TABLE encounters ADD CONSTRAINT fk FOREIGN KEY (patient) REFERENCES notes (id)`,
			"0A000 foreign key on the reference column"},
		{`CREATE INDEX ON encounters ((patient + 1))`,
			"0A000 index on table public.encounters names its reference column patient in an expression"},
		{`CREATE UNIQUE INDEX ON encounters (at) WHERE patient > 10`,
			"0A000 index on table public.encounters names its reference column patient in an expression"},
	}
	for _, c := range cases {
		d, re := ClassifiedDDL(c.sql, 0, p, nil)
		if re != nil || d == nil {
			t.Errorf("%s: %v, %v", c.sql, d, re)
			continue
		}
		sqls, re := d.Base(split, held)
		got := strings.Join(sqls, "; ")
		if re != nil {
			got = re.SQLState + " " + re.Message
		}
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%s:\n got %s\nwant %s", c.sql, got, c.want)
		}
	}
}

// Other DDL naming a classified table is refused, naming it.
func TestTableDDLRefused(t *testing.T) {
	p, err := policy.Parse("policy.yaml", []byte(splitPolicy))
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`ALTER TABLE patients RENAME TO people`,
		`ALTER TABLE patients SET SCHEMA other`,
		`ALTER TABLE patients ENABLE ROW LEVEL SECURITY`,
		`ALTER TABLE patients OWNER TO someone`,
		`ALTER TABLE patients RENAME COLUMN ssn TO national_id`,
		`CREATE TRIGGER t BEFORE INSERT ON patients FOR EACH ROW EXECUTE FUNCTION f()`,
		`CREATE RULE r AS ON INSERT TO encounters DO INSTEAD NOTHING`,
		`CREATE POLICY p ON patients USING (true)`,
		`CREATE STATISTICS s ON ssn, first FROM patients`,
		`CREATE INDEX CONCURRENTLY ON patients (ssn)`,
		`DROP VIEW patients`,
		`CREATE TABLE patients AS SELECT 1 AS id`,
		`SELECT 1 AS id INTO patients`,
		`DROP TABLE patients, encounters`,
	} {
		d, re := ClassifiedDDL(sql, 0, p, nil)
		if re == nil || re.SQLState != CodeFeatureNotSupported || !strings.Contains(re.Message, "public.") {
			t.Errorf("%s: %v, %v", sql, d, re)
		}
	}
	// DDL on other tables is not Privata's.
	for _, sql := range []string{`CREATE TABLE other (id int)`, `ALTER TABLE other ADD COLUMN x int`,
		`CREATE TEMP TABLE patients (id int)`, `DROP TABLE other`} {
		if d, re := ClassifiedDDL(sql, 0, p, nil); d != nil || re != nil {
			t.Errorf("%s: %v, %v", sql, d, re)
		}
	}
}
