package rewrite

import (
	"maps"
	"testing"
)

func TestSQLCommenterTags(t *testing.T) {
	cases := []struct {
		name string
		sql  string
		tags map[string]string
	}{
		{"tags at the end", "SELECT 1 /*actor='dr%20who',purpose='treatment'*/",
			map[string]string{"actor": "dr who", "purpose": "treatment"}},
		{"tags at the start", "/* actor='a' */ SELECT 1", map[string]string{"actor": "a"}},
		{"keys are lower-cased", "SELECT 1 /*Actor='a'*/", map[string]string{"actor": "a"}},
		{"an escaped quote", `SELECT 1 /*actor='o\'brien'*/`, map[string]string{"actor": "o'brien"}},
		{"URL-encoded punctuation", "SELECT 1 /*route='%2Fapi%2Fv1%3Fx%3D1',db_driver='pg%2C8'*/",
			map[string]string{"route": "/api/v1?x=1", "db_driver": "pg,8"}},
		{"plus is not a space", "SELECT 1 /*actor='a+b'*/", map[string]string{"actor": "a+b"}},
		{"the last tag comment wins", "/*actor='first'*/ SELECT 1 /*purpose='second'*/",
			map[string]string{"purpose": "second"}},
		{"a plain comment does not reset tags", "SELECT 1 /*actor='a'*/ /* just a note */",
			map[string]string{"actor": "a"}},
		{"tags in a later statement of the text", "SELECT 1; SELECT 2 /*actor='b'*/",
			map[string]string{"actor": "b"}},

		{"a tag inside a string is not a tag", "SELECT '/*actor=''admin''*/'", nil},
		{"a tag inside a dollar quote is not a tag", "SELECT $$/*actor='admin'*/$$", nil},
		{"a tag inside a quoted identifier is not a tag", `SELECT 1 AS "/*actor='admin'*/"`, nil},
		{"a line comment carries no tags", "SELECT 1 -- actor='admin'", nil},
		{"an unquoted value is malformed", "SELECT 1 /*actor=admin*/", nil},
		{"a missing value is malformed", "SELECT 1 /*actor=*/", nil},
		{"an unterminated value is malformed", "SELECT 1 /*actor='admin*/", nil},
		{"a trailing comma is malformed", "SELECT 1 /*actor='a',*/", nil},
		{"a bad escape is malformed", "SELECT 1 /*actor='%zz'*/", nil},
		{"invalid UTF-8 after decoding is malformed", "SELECT 1 /*actor='%ff'*/", nil},
		{"a control character is malformed", "SELECT 1 /*actor='a%0Ab'*/", nil},
		{"junk between pairs is malformed", "SELECT 1 /*actor='a' x purpose='b'*/", nil},
		{"an empty key is malformed", "SELECT 1 /*='a'*/", nil},
		{"prose is not tags", "SELECT 1 /* fetch the patient's record */", nil},
		{"an empty comment", "SELECT 1 /**/", nil},
	}
	a := NewAnalyzer(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			an, err := a.Analyze(c.sql)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(an.Tags, c.tags) {
				t.Fatalf("Tags = %q; want %q", an.Tags, c.tags)
			}
		})
	}
}
