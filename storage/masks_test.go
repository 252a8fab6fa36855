package storage_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
)

const masksSchema = `
CREATE TABLE members (
    id         int PRIMARY KEY,
    code       varchar(12),
    ssn        char(11),
    name       text COLLATE "C",
    born       date,
    seen       timestamp,
    last_login timestamptz,
    token      text,
    ext        uuid,
    blob       bytea,
    score      numeric(5,2),
    tags       text[],
    email      text
);
INSERT INTO members VALUES
    (1, 'ABCDEFGH', '999-12-3456', 'Jane', '1990-07-14', '2021-03-04 05:06:07', '2022-12-31 23:30:00+00',
     'secret-token', 'a3bb189e-8bf9-3888-9912-ace4e6543002', '\x0102', 12.34, '{a,b}', 'jane@example.org'),
    (2, 'XY', '999-00-0000', '', '2000-01-01', NULL, NULL, 'secret-token', NULL, NULL, NULL, NULL, NULL);
`

const masksPolicy = `
version: 1
regions: {us: {cluster: us}}
subjects:
  members:
    key: id
    identity: [code, ssn, name, born, seen, last_login, token, ext, blob, score, tags, email]
    masks: {ssn: last4, name: initial, seen: year, token: hash, ext: hash, blob: hash, email: redact}
roles:
  m_full: {identity: full}
  m_masked: {identity: masked}
`

func TestMasksKeepTypesAndHideValues(t *testing.T) {
	d := newDB(t)
	d.exec(t, masksSchema)
	types := func(rel string) []string {
		return column(t, d.conn, `SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
			WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, rel)
	}
	before := types("members")
	full := d.contents(t, "members")
	d.apply(t, parsePolicy(t, masksPolicy))
	if after := types("members"); !slices.Equal(before, after) {
		t.Fatalf("the view's column types differ from the table's:\n%v\n%v", before, after)
	}
	collation := `SELECT collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
		WHERE attrelid = 'members'::regclass AND attname = 'name'`
	if got := column(t, d.conn, collation); got[0] != "C" {
		t.Fatalf("the view's name column has collation %s, want C", got[0])
	}
	const row = `SELECT concat_ws(' | ', id, code, ssn, name, born, seen, last_login AT TIME ZONE 'UTC',
		ext, encode(blob, 'hex'), score, tags, email) FROM members ORDER BY id`
	var masked, hashes []string
	d.as(t, "m_masked", func(tx pgx.Tx) {
		masked = column(t, tx, row)
		column(t, tx, `SELECT name FROM members ORDER BY name`)
		hashes = column(t, tx, `SELECT token FROM members ORDER BY id`)
		mustDeny(t, tx, `SELECT * FROM privata.secrets`)
	})
	want := []string{
		"1 | A******H | *******3456 | J. | 1990-01-01 | 2021-01-01 00:00:00 | 2022-01-01 00:00:00 | " +
			`HASHUUID | HASHBYTES`,
		"2 | ** | *******0000 |  | 2000-01-01",
	}
	uuid := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	bytes := regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	got := []string{
		bytes.ReplaceAllString(uuid.ReplaceAllString(masked[0], "HASHUUID"), "HASHBYTES"),
		masked[1],
	}
	if !slices.Equal(got, want) {
		t.Fatalf("masked role reads\n%q\nwant\n%q", got, want)
	}
	if masked[0] == "" || uuid.FindString(masked[0]) == "a3bb189e-8bf9-3888-9912-ace4e6543002" {
		t.Fatalf("the uuid is not hashed: %s", masked[0])
	}
	// Equal values hash equally; the hash is keyed, not a plain digest.
	if len(hashes[0]) != 64 || hashes[0] != hashes[1] {
		t.Fatalf("token hashes %q", hashes)
	}
	if plain := column(t, d.conn, `SELECT encode(sha256('secret-token'), 'hex')`); plain[0] == hashes[0] {
		t.Fatalf("the hash is an unkeyed SHA-256")
	}
	d.as(t, "m_full", func(tx pgx.Tx) {
		rows := column(t, tx, `SELECT t::text FROM members t ORDER BY id`)
		if !slices.Equal(rows, full["members"]) {
			t.Fatalf("full role reads\n%v\nwant\n%v", rows, full["members"])
		}
	})
}
