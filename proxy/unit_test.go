package proxy

import (
	"reflect"
	"testing"
)

func TestSplitOptionsLikePostgres(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"-c a=b", []string{"-c", "a=b"}},
		{`  -c  x=a\ b   --y=z `, []string{"-c", "x=a b", "--y=z"}},
		{`-c q=\\`, []string{"-c", `q=\`}},
	} {
		if got := splitOptions(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitOptions(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	st := &startup{params: map[string]string{
		"options":          `-c Privata.Actor=dr\ who -cDateStyle=ISO --statement-timeout=5s`,
		"application_name": "app"}}
	want := map[string]string{"privata.actor": "dr who", "datestyle": "ISO",
		"statement_timeout": "5s", "application_name": "app"}
	if got := st.settings(); !reflect.DeepEqual(got, want) {
		t.Errorf("settings = %v, want %v", got, want)
	}
}

func TestUpstreamContextFollowsTransactions(t *testing.T) {
	actor := func(c *upstreamContext) ctxValue { return c.visible["privata.actor"] }
	set := func(v string, local bool) []ctxSet {
		return []ctxSet{{name: "privata.actor", value: v, local: local}}
	}
	want := map[string]string{"privata.actor": "b"}

	c := newUpstreamContext(map[string]string{"privata.actor": "a"})
	if got := actor(c); got != (ctxValue{"a", true}) {
		t.Fatalf("initial = %+v", got)
	}
	if sets := c.needs(map[string]string{"privata.actor": "a"}); sets != nil {
		t.Fatalf("same value needs %v", sets)
	}

	// SET in an implicit transaction that commits: kept.
	c.begin()
	c.set(set("b", false))
	c.ready('I', 1)
	if sets := c.needs(want); sets != nil {
		t.Fatalf("committed SET: needs %v", sets)
	}

	// SET then an error in the same implicit transaction: undone.
	c.begin()
	c.set(set("c", false))
	c.fail()
	c.ready('I', 1)
	if got := actor(c); got != (ctxValue{"b", true}) {
		t.Fatalf("after failed transaction = %+v, want b", got)
	}

	// SET LOCAL inside a block: visible in it, gone after COMMIT.
	c.begin()
	c.set(set("d", true))
	c.ready('T', 0)
	if got := actor(c); got.v != "d" {
		t.Fatalf("in block = %+v", got)
	}
	c.ready('I', 1)
	if got := actor(c); got.v != "b" {
		t.Fatalf("after COMMIT of SET LOCAL = %+v, want b", got)
	}

	// SET in a block that is rolled back.
	c.begin()
	c.set(set("e", false))
	c.ready('T', 0)
	c.rollback()
	c.ready('I', 1)
	if got := actor(c); got.v != "b" {
		t.Fatalf("after ROLLBACK = %+v, want b", got)
	}

	// While a change is in flight, nothing is trusted.
	c.begin()
	if sets := c.needs(want); len(sets) != 1 {
		t.Fatalf("in flight: needs %v, want an injection", sets)
	}
	c.ready('I', 1)

	// ROLLBACK TO SAVEPOINT: unknown.
	c.rollback()
	c.ready('T', 0)
	if got := actor(c); got.known {
		t.Fatalf("after ROLLBACK TO SAVEPOINT = %+v, want unknown", got)
	}
}

func TestParseStartupRefusals(t *testing.T) {
	pkt := startupPacket(protocol30, "user", "u", "replication", "database")
	if _, err := parseStartup(pkt[8:]); err == nil || err.(*Error).Code != codeFeatureNotSupport {
		t.Errorf("replication: %v", err)
	}
	pkt = startupPacket(protocol30, "database", "d")
	if _, err := parseStartup(pkt[8:]); err == nil || err.(*Error).Code != codeInvalidAuthSpec {
		t.Errorf("no user: %v", err)
	}
	pkt = startupPacket(protocol30, "user", "u", "_pq_.thing", "1")
	st, err := parseStartup(pkt[8:])
	if err != nil || st.database != "u" || !reflect.DeepEqual(st.unsupported, []string{"_pq_.thing"}) {
		t.Errorf("protocol option: %+v %v", st, err)
	}
}
