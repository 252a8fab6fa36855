package storage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/storage"
)

// A child's constraints and indexes that name its reference column hold
// on the pseudonym once it is split: one row per subject and slot, one
// open visit per subject, one profile per subject.
const referenceSchema = `
CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE visits (
    id     serial PRIMARY KEY,
    person int NOT NULL REFERENCES people ON DELETE CASCADE,
    slot   int NOT NULL,
    note   text,
    CONSTRAINT visits_person_slot UNIQUE NULLS NOT DISTINCT (person, slot) DEFERRABLE
);
CREATE UNIQUE INDEX visits_one_open ON visits (person) WHERE note IS NULL;
CREATE INDEX visits_person ON visits (person, slot DESC);
CREATE INDEX visits_by_class ON visits (person int4_ops, note COLLATE "C");
CREATE UNIQUE INDEX visits_slot_noted ON visits (slot, note) WHERE person IS NOT NULL;
CREATE TABLE profiles (person int PRIMARY KEY REFERENCES people, bio text);
INSERT INTO people (name) VALUES ('Ann'), ('Bo');
INSERT INTO visits (person, slot, note) VALUES (1, 1, 'done'), (1, 2, NULL), (2, 1, NULL);
INSERT INTO profiles VALUES (1, 'hello');
`

const referencePolicy = `
version: 1
regions: {us: {cluster: us}}
subjects:
  people: {key: id, identity: [name]}
children:
  visits: {subject: {table: people, column: person}}
  profiles: {subject: {table: people, column: person}}
roles:
  doctor: {identity: full, clinical: full}
`

func TestChildConstraintsOnTheReference(t *testing.T) {
	d := newDB(t)
	d.exec(t, referenceSchema)
	pol := parsePolicy(t, referencePolicy)
	d.apply(t, pol)
	// What apply derives does not depend on the order it planned the
	// constraints in (people's key first) or reads them back in (by name).
	if again := d.preview(t, pol); !again.Empty() {
		t.Errorf("a second apply would run:\n%s", again.SQL())
	}

	rows, err := d.conn.Query(ctx, `SELECT indexname || ': ' || indexdef FROM pg_indexes
		WHERE schemaname = 'privata_clinical' AND tablename IN ('visits', 'profiles') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		// profiles' primary key serves its lookups by pseudonym.
		"profiles_pkey: CREATE UNIQUE INDEX profiles_pkey ON privata_clinical.profiles USING btree (privata_pseudonym)",
		// The operator class and collation of the reference's type are
		// not the pseudonym's: it takes its own.
		"visits_by_class: CREATE INDEX visits_by_class ON privata_clinical.visits USING btree (privata_pseudonym, note COLLATE \"C\")",
		"visits_one_open: CREATE UNIQUE INDEX visits_one_open ON privata_clinical.visits USING btree (privata_pseudonym) WHERE (note IS NULL)",
		// The application's index led by the reference serves them
		// for visits: Privata adds none of its own.
		"visits_person: CREATE INDEX visits_person ON privata_clinical.visits USING btree (privata_pseudonym, slot DESC)",
		"visits_person_slot: CREATE UNIQUE INDEX visits_person_slot ON privata_clinical.visits USING btree (privata_pseudonym, slot) NULLS NOT DISTINCT",
		"visits_pkey: CREATE UNIQUE INDEX visits_pkey ON privata_clinical.visits USING btree (id)",
		"visits_slot_noted: CREATE UNIQUE INDEX visits_slot_noted ON privata_clinical.visits USING btree (slot, note) WHERE (privata_pseudonym IS NOT NULL)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("indexes of the clinical base tables:\n%s\nwant:\n%s", strings.Join(got, "\n"),
			strings.Join(want, "\n"))
	}
	var deferrable bool
	if err := d.conn.QueryRow(ctx, `SELECT condeferrable FROM pg_constraint WHERE conname = 'visits_person_slot'
		AND conrelid = 'privata_clinical.visits'::regclass`).Scan(&deferrable); err != nil || !deferrable {
		t.Errorf("visits_person_slot lost DEFERRABLE: %v", err)
	}

	for _, c := range []struct {
		sql        string
		constraint string // violated, or "" for none
	}{
		{"INSERT INTO visits (person, slot, note) VALUES (1, 1, 'again')", "visits_person_slot"},
		{"INSERT INTO visits (person, slot, note) VALUES (2, 2, 'fine')", ""},
		{"INSERT INTO visits (person, slot) VALUES (1, 3)", "visits_one_open"},
		{"INSERT INTO visits (person, slot, note) VALUES (2, 3, 'z'), (1, 3, 'z')", "visits_slot_noted"},
		{"INSERT INTO visits (person, slot, note) VALUES (1, 3, 'closed')", ""},
		{"UPDATE visits SET person = 1, note = 'moved' WHERE person = 2", "visits_person_slot"},
		{"INSERT INTO profiles VALUES (1, 'twice')", "profiles_pkey"},
		{"INSERT INTO profiles VALUES (2, 'first'); UPDATE profiles SET bio = 'moved' WHERE person = 2", ""},
		{"INSERT INTO profiles VALUES (2, 'first'); UPDATE profiles SET person = 2 WHERE person = 1", "profiles_pkey"},
	} {
		d.as(t, "doctor", func(tx pgx.Tx) {
			_, err := tx.Exec(ctx, "SET CONSTRAINTS ALL IMMEDIATE;"+c.sql)
			var pe *pgconn.PgError
			switch {
			case c.constraint == "" && err != nil:
				t.Errorf("%s: %v", c.sql, err)
			case c.constraint != "" && (!errors.As(err, &pe) || pe.Code != "23505" || pe.ConstraintName != c.constraint):
				t.Errorf("%s: got %v, want a unique violation of %s", c.sql, err, c.constraint)
			}
		})
	}
}

// What would name the reference column in an expression is refused: the
// pseudonym that stores it has another type and other values.
// A NULL reference where the application's column is NOT NULL fails as
// on a plain table, naming the column.
func TestChildNullReference(t *testing.T) {
	d := newDB(t)
	d.exec(t, referenceSchema)
	d.apply(t, parsePolicy(t, referencePolicy))
	d.as(t, "doctor", func(tx pgx.Tx) {
		_, err := tx.Exec(ctx, `INSERT INTO visits (person, slot) VALUES (NULL, 7)`)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "23502" || pe.ColumnName != "person" || pe.TableName != "visits" ||
			pe.Message != `null value in column "person" of relation "visits" violates not-null constraint` {
			t.Errorf("a NULL reference: %#v", err)
		}
	})
}

func TestChildExpressionsOnTheReferenceRefused(t *testing.T) {
	pol := parsePolicy(t, referencePolicy)
	for _, c := range []struct{ ddl, want string }{
		{"CREATE TABLE visits (person int REFERENCES people CHECK (person > 0), note text)",
			"constraint visits_person_check names the reference column person"},
		{"CREATE TABLE visits (person int REFERENCES people, note text); " +
			"CREATE INDEX visits_expr ON visits ((person + 1))",
			"index visits_expr names the reference column person in an expression or its condition"},
		{"CREATE TABLE visits (person int REFERENCES people, note text); " +
			"CREATE UNIQUE INDEX visits_some ON visits (note) WHERE person > 10",
			"index visits_some names the reference column person in an expression or its condition"},
		{"CREATE TABLE visits (person int REFERENCES people, during tsrange, " +
			"EXCLUDE USING gist (during WITH &&) WHERE (person IS NOT NULL))",
			"constraint visits_during_excl names the reference column person"},
	} {
		d := newDB(t)
		d.exec(t, "CREATE TABLE people (id serial PRIMARY KEY, name text); "+
			"CREATE TABLE profiles (person int PRIMARY KEY REFERENCES people, bio text);"+c.ddl)
		if _, err := d.tryApply(t, pol); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: apply: %v, want %q", c.ddl, err, c.want)
		}
	}
}

// privata_catalog.object_name finds the index Privata adds for a child's
// pseudonym by its name: it must name objects as storage does, also when
// the name is cut (in the middle of a multibyte character, too).
func TestObjectNameInSQL(t *testing.T) {
	d := newDB(t)
	d.exec(t, referenceSchema)
	d.apply(t, parsePolicy(t, referencePolicy))
	for _, name := range []string{
		"visits_privata_pseudonym_idx",
		strings.Repeat("v", 41) + "_privata_pseudonym_idx",
		strings.Repeat("v", 42) + "_privata_pseudonym_idx",
		strings.Repeat("ä", 27) + "_privata_pseudonym_idx",
		"x" + strings.Repeat("ä", 27) + "_privata_pseudonym_idx",
	} {
		var got string
		if err := d.conn.QueryRow(ctx, "SELECT privata_catalog.object_name($1)", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := storage.ObjectName(name); got != want {
			t.Errorf("object_name(%q) = %q, want %q", name, got, want)
		}
	}
}
