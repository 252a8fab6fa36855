package rewrite

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/privata/privata/internal/pgtest"
)

func TestUnsafeSettings(t *testing.T) {
	cases := []struct {
		name   string
		sql    string
		unsafe string // substring of Unsafe; "" for statements that must pass
	}{
		{"SET standard_conforming_strings off", "SET standard_conforming_strings = off",
			"standard_conforming_strings to off"},
		{"SET standard_conforming_strings false", "SET standard_conforming_strings TO false",
			"standard_conforming_strings to off"},
		{"SET standard_conforming_strings 0", "SET standard_conforming_strings TO 0",
			"standard_conforming_strings to off"},
		{"SET LOCAL standard_conforming_strings", "SET LOCAL standard_conforming_strings TO 'off'",
			"standard_conforming_strings to off"},
		{"set_config standard_conforming_strings",
			"SELECT set_config('standard_conforming_strings', 'off', false)", "with set_config()"},
		{"set_config standard_conforming_strings from a parameter",
			"SELECT set_config('standard_conforming_strings', $1, false)", "with set_config()"},
		{"ALTER ROLE SET standard_conforming_strings",
			"ALTER ROLE app SET standard_conforming_strings = off", "with ALTER ROLE ... SET"},
		{"ALTER DATABASE SET standard_conforming_strings",
			"ALTER DATABASE app SET standard_conforming_strings = off", "with ALTER DATABASE ... SET"},
		{"a function SET clause", "CREATE FUNCTION f() RETURNS int LANGUAGE sql " +
			"SET standard_conforming_strings = off AS 'SELECT 1'", "in a function SET clause"},
		{"a DO block", "DO $$BEGIN SET standard_conforming_strings = off; END$$",
			"the DO block runs setting standard_conforming_strings to off"},
		{"SET client_encoding SJIS", "SET client_encoding = 'SJIS'", "client_encoding"},
		{"SET NAMES LATIN1", "SET NAMES 'LATIN1'", "client_encoding"},
		{"set_config client_encoding", "SELECT set_config('client_encoding', 'BIG5', false)",
			"client_encoding"},

		{"standard_conforming_strings on is allowed", "SET standard_conforming_strings = on", ""},
		{"standard_conforming_strings true is allowed", "SET standard_conforming_strings TO true", ""},
		{"standard_conforming_strings reset is allowed", "RESET standard_conforming_strings", ""},
		{"standard_conforming_strings default is allowed",
			"SET standard_conforming_strings TO DEFAULT", ""},
		{"client_encoding UTF8 is allowed", "SET client_encoding = 'UTF8'", ""},
		{"client_encoding utf-8 is allowed", "SET client_encoding TO 'utf-8'", ""},
		{"SET NAMES unicode is allowed", "SET NAMES 'unicode'", ""},
		{"client_encoding SQL_ASCII is allowed, as at connection start", "SET client_encoding = SQL_ASCII", ""},
		{"other settings are allowed", "SET backslash_quote = on", ""},
	}
	a := NewAnalyzer(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := analyzeOne(t, a, c.sql)
			switch {
			case c.unsafe == "" && st.Unsafe != "":
				t.Fatalf("Unsafe = %q; want none", st.Unsafe)
			case !strings.Contains(st.Unsafe, c.unsafe):
				t.Fatalf("Unsafe = %q; want it to say %q", st.Unsafe, c.unsafe)
			}
			if st.RoleChange != "" {
				t.Fatalf("RoleChange = %q", st.RoleChange)
			}
		})
	}
}

// contextCases are statements that assign Privata's settings.
// TestContextMatchesPostgreSQL checks the constant ones against
// current_setting().
var contextCases = []struct {
	name    string
	sql     string
	context []ContextSet
}{
	{"SET privata.actor", "SET privata.actor = 'dr who'",
		[]ContextSet{{Name: "privata.actor", Value: "dr who"}}},
	{"SET SESSION privata.actor", "SET SESSION privata.actor TO 'nurse'",
		[]ContextSet{{Name: "privata.actor", Value: "nurse"}}},
	{"SET LOCAL privata.purpose", "SET LOCAL privata.purpose TO treatment",
		[]ContextSet{{Name: "privata.purpose", Value: "treatment", Local: true}}},
	{"SET with a mixed-case name", `SET "Privata.Actor" = 'x'`,
		[]ContextSet{{Name: "privata.actor", Value: "x"}}},
	{"set_config with constants", "SELECT set_config('privata.purpose', 'research', false)",
		[]ContextSet{{Name: "privata.purpose", Value: "research"}}},
	{"set_config local", "SELECT set_config('privata.actor', 'a', true)",
		[]ContextSet{{Name: "privata.actor", Value: "a", Local: true}}},
	{"set_config from a parameter", "SELECT set_config('privata.actor', $1, false)",
		[]ContextSet{{Name: "privata.actor", Param: 1}}},
	{"set_config from an expression", "SELECT set_config('privata.actor', current_user, false)",
		[]ContextSet{{Name: "privata.actor", Unknown: true}}},
	{"RESET privata.actor", "RESET privata.actor",
		[]ContextSet{{Name: "privata.actor", Reset: true}}},
	{"SET privata.actor TO DEFAULT", "SET privata.actor TO DEFAULT",
		[]ContextSet{{Name: "privata.actor", Reset: true}}},
	{"a DO block's SET", "DO $$BEGIN SET privata.actor = 'x'; END$$",
		[]ContextSet{{Name: "privata.actor", Value: "x"}}},
	{"other settings are not context", "SET search_path = a, b", nil},
}

func TestContextSettings(t *testing.T) {
	a := NewAnalyzer(0)
	for _, c := range contextCases {
		t.Run(c.name, func(t *testing.T) {
			st := analyzeOne(t, a, c.sql)
			if !slices.Equal(st.Context, c.context) {
				t.Fatalf("Context = %+v; want %+v", st.Context, c.context)
			}
			for _, s := range st.Context {
				if !slices.Contains(st.Settings, s) {
					t.Fatalf("Settings %+v lack context %+v", st.Settings, s)
				}
			}
		})
	}
	st := analyzeOne(t, a, "SET search_path = a, b")
	want := []ContextSet{{Name: "search_path", Value: "a, b"}}
	if !slices.Equal(st.Settings, want) {
		t.Errorf("Settings = %+v; want %+v", st.Settings, want)
	}
}

func TestContextMatchesPostgreSQL(t *testing.T) {
	db := pgtest.NewDB(t, pgtest.Shared(t))
	a := NewAnalyzer(0)
	ran := 0
	for i, c := range contextCases {
		if len(c.context) != 1 || c.context[0].Value == "" || c.context[0].Local {
			continue
		}
		ran++
		t.Run(c.name, func(t *testing.T) {
			conn := caseConn(t, db, 2000+i)
			mustExec(t, conn, c.sql)
			st := analyzeOne(t, a, c.sql)
			var got string
			err := conn.QueryRow(context.Background(), "SELECT current_setting($1)",
				st.Context[0].Name).Scan(&got)
			if err != nil {
				t.Fatal(err)
			}
			if got != st.Context[0].Value {
				t.Fatalf("PostgreSQL has %q, Analyze says %q", got, st.Context[0].Value)
			}
		})
	}
	if ran < 5 {
		t.Fatalf("only %d cases ran against PostgreSQL", ran)
	}
}
