package rewrite

import (
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	p := clinicPolicy(t)
	analyst := Session{Role: p.Role("analyst")}
	cases := []struct {
		name    string
		sql     string
		action  Action
		code    string
		message string
	}{
		{"SET ROLE is refused", "SET ROLE 'postgres'", Refuse, CodeInsufficientPriv,
			"permission denied to change role through Privata: SET ROLE"},
		{"a DO block that sets the role is refused",
			"DO $$BEGIN EXECUTE 'SET ROLE x'; END$$", Refuse, CodeInsufficientPriv,
			"the DO block runs dynamic SQL"},
		{"standard_conforming_strings off is refused", "SET standard_conforming_strings = off",
			Refuse, CodeFeatureNotSupported,
			"not supported through Privata: setting standard_conforming_strings to off"},
		{"a read of identity data is allowed", "SELECT ssn FROM patients", Allow, "", ""},
		{"SET privata.actor is allowed", "SET privata.actor = 'x'", Allow, "", ""},
		{"RESET ALL is allowed", "RESET ALL", Allow, "", ""},
	}
	a := NewAnalyzer(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := analyzeOne(t, a, c.sql)
			d := Decide(st, Classify(st, p, nil), analyst)
			if d.Action != c.action || d.SQLState != c.code || !strings.Contains(d.Message, c.message) {
				t.Fatalf("decision %+v; want %v %s %q", d, c.action, c.code, c.message)
			}
			if d.Action == Refuse && d.Hint == "" {
				t.Fatal("a refusal without a hint")
			}
		})
	}
}

func TestRefusalsNameTheRoleButNoValue(t *testing.T) {
	p := clinicPolicy(t)
	st := analyzeOne(t, NewAnalyzer(0), "SELECT set_config('role', 'secret_role', false)")
	d := Decide(st, Classification{}, Session{Role: p.Role("analyst")})
	text := d.Message + d.Hint
	if strings.Contains(text, "secret_role") || !strings.Contains(d.Hint, `"analyst"`) {
		t.Fatalf("decision %+v", d)
	}
	if d := Decide(st, Classification{}, Session{}); d.Action != Refuse || d.Hint == "" {
		t.Fatalf("without a role: %+v", d)
	}
}
