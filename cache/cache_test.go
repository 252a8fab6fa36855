package cache

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/privata/privata/config"
)

const (
	pseudoA = "6f1c2a5e-0c1e-4a53-9d55-0e6a4f7f3a01"
	pseudoB = "0b7d8e21-5f44-4e7a-8f0c-2d9b1e6c4b02"
)

func TestHitAfterFillAndMissOtherwise(t *testing.T) {
	eachBackend(t, func(t *testing.T, f *fixture) {
		req := pointRead("clinician", "1001")
		res := wantMiss(t, f.cache, req)
		if !res.Ticket.Valid() {
			t.Fatal("a miss gave no ticket")
		}
		deps := []Dep{{"public.patients", pseudoA}, {"public.patients", pseudoA}}
		if err := f.cache.Put(context.Background(), res.Ticket, []byte("row 1001"), deps); err != nil {
			t.Fatal(err)
		}

		hit := wantHit(t, f.cache, req, "row 1001")
		if want := []Dep{{"public.patients", pseudoA}}; !slices.Equal(hit.Deps, want) {
			t.Fatalf("deps = %v, want %v (deduplicated)", hit.Deps, want)
		}
		wantMiss(t, f.cache, pointRead("clinician", "1002"))

		if got := testutil.ToFloat64(f.cache.m.hits); got != 1 {
			t.Fatalf("hits metric = %v, want 1", got)
		}
		misses := testutil.ToFloat64(f.cache.m.m.misses.WithLabelValues(f.kind, "absent"))
		if misses != 2 {
			t.Fatalf("absent misses metric = %v, want 2", misses)
		}
	})
}

func TestTwoRolesNeverShareAnEntry(t *testing.T) {
	eachBackend(t, func(t *testing.T, f *fixture) {
		clinician, researcher := pointRead("clinician", "1001"), pointRead("researcher", "1001")
		dep := Dep{"public.patients", pseudoA}
		fill(t, f.cache, clinician, "name=Maynard46 ssn=999-17-5017", dep)
		wantMiss(t, f.cache, researcher)
		fill(t, f.cache, researcher, "name=*** ssn=***", dep)

		wantHit(t, f.cache, clinician, "name=Maynard46 ssn=999-17-5017")
		wantHit(t, f.cache, researcher, "name=*** ssn=***")
		if n := len(f.entryKeys(t)); n != 2 {
			t.Fatalf("backend holds %d entries, want 2 (one per role)", n)
		}
	})
}

func TestEveryRequestFieldChangesTheName(t *testing.T) {
	n := newNamer("p:", testHashKey)
	base := func() *Request {
		r := pointRead("clinician", "1001")
		r.Consent = "v3"
		r.Settings = map[string]string{"TimeZone": "UTC"}
		return r
	}
	variants := map[string]func(r *Request){
		"role":             func(r *Request) { r.Role = "researcher" },
		"profile":          func(r *Request) { r.Profile = "masked" },
		"purpose":          func(r *Request) { r.Purpose = "research" },
		"consent":          func(r *Request) { r.Consent = "v4" },
		"database":         func(r *Request) { r.Database = "eu/clinic" },
		"sql literal":      func(r *Request) { r.SQL = "SELECT * FROM patients WHERE id = 1001" },
		"param value":      func(r *Request) { r.Params[0] = []byte("1002") },
		"null param":       func(r *Request) { r.Params[0] = nil },
		"empty param":      func(r *Request) { r.Params[0] = []byte{} },
		"extra param":      func(r *Request) { r.Params = append(r.Params, nil) },
		"param format":     func(r *Request) { r.ParamFormats = []int16{1} },
		"result format":    func(r *Request) { r.ResultFormats = []int16{1} },
		"no result format": func(r *Request) { r.ResultFormats = nil },
		"setting value":    func(r *Request) { r.Settings["TimeZone"] = "Europe/Stockholm" },
		"extra setting":    func(r *Request) { r.Settings["DateStyle"] = "ISO, MDY" },
		"shifted boundary": func(r *Request) { r.Role, r.Profile = "clinicia", "ndefault" },
	}
	names := map[string]string{n.entry(base()): "base"}
	for what, change := range variants {
		r := base()
		change(r)
		name := n.entry(r)
		if other, ok := names[name]; ok {
			t.Errorf("changing %s gives the same name as %s", what, other)
		}
		names[name] = what
	}
	if n.entry(base()) != n.entry(base()) {
		t.Error("the same request gives two names")
	}
	if other := newNamer("p:", []byte("another hash key, 32 bytes long!")); other.entry(base()) ==
		n.entry(base()) {
		t.Error("the hash key does not change the name")
	}
}

func TestBreakGlassIsNeverCached(t *testing.T) {
	eachBackend(t, func(t *testing.T, f *fixture) {
		req := pointRead("clinician", "1001")
		fill(t, f.cache, req, "row", Dep{"public.patients", pseudoA})
		req.BreakGlass = true
		res := wantMiss(t, f.cache, req)
		if res.Ticket.Valid() {
			t.Fatal("a break-glass read got a ticket to fill the cache")
		}
		if err := f.cache.Put(context.Background(), res.Ticket, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
		if n := len(f.entryKeys(t)); n != 1 {
			t.Fatalf("backend holds %d entries, want 1", n)
		}
	})
}

func TestPutNeedsDependencies(t *testing.T) {
	f := newFixture(t, "memory", nil)
	ctx := context.Background()
	res := wantMiss(t, f.cache, pointRead("clinician", "1"))
	if err := f.cache.Put(ctx, res.Ticket, []byte("x"), nil); err == nil {
		t.Fatal("put without dependencies accepted")
	}
	if err := f.cache.Put(ctx, res.Ticket, []byte("x"), []Dep{{"", pseudoA}}); err == nil {
		t.Fatal("put with a dependency without table accepted")
	}
	many := make([]Dep, MaxDeps+1)
	for i := range many {
		many[i] = Dep{"public.encounters", fmt.Sprintf("subject-%d", i)}
	}
	if err := f.cache.Put(ctx, res.Ticket, []byte("x"), many); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, f.cache, pointRead("clinician", "1"))
	if got := testutil.ToFloat64(f.cache.m.m.fills.WithLabelValues("memory", "skipped")); got != 1 {
		t.Fatalf("skipped fills = %v, want 1", got)
	}
}

// TestChangesInvalidateWhatTheyTouchAndNothingElse checks each kind of
// dependency against each kind of change.
func TestChangesInvalidateWhatTheyTouchAndNothingElse(t *testing.T) {
	eachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		patientA := pointRead("clinician", "1")
		patientB := pointRead("clinician", "2")
		nobody := pointRead("clinician", "404")
		encountersA := &Request{Role: "clinician", SQL: "SELECT * FROM encounters WHERE patient_id = $1",
			Params: [][]byte{[]byte("1")}}
		fillAll := func() {
			fill(t, f.cache, patientA, "A", Dep{"public.patients", pseudoA})
			fill(t, f.cache, patientB, "B", Dep{"public.patients", pseudoB})
			fill(t, f.cache, nobody, "no rows", Dep{"public.patients", ""})
			fill(t, f.cache, encountersA, "A's encounters", Dep{"public.encounters", pseudoA})
		}
		steps := []struct {
			name   string
			change Change
			stale  []*Request
		}{
			{"update of A's patient row", Change{Table: "public.patients", Subject: pseudoA, Op: Update},
				[]*Request{patientA, nobody}},
			{"insert of an encounter of B", Change{Table: "public.encounters", Subject: pseudoB,
				Op: Insert}, nil},
			{"insert of an encounter of A", Change{Table: "public.encounters", Subject: pseudoA,
				Op: Insert}, []*Request{encountersA}},
			{"truncate of patients", Change{Table: "public.patients", Op: Truncate},
				[]*Request{patientA, patientB, nobody}},
		}
		for _, step := range steps {
			if err := f.cache.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			fillAll()
			if err := f.cache.Invalidate(ctx, step.change); err != nil {
				t.Fatal(err)
			}
			for _, req := range []*Request{patientA, patientB, nobody, encountersA} {
				res := get(t, f.cache, req)
				if stale := slices.Contains(step.stale, req); res.Hit == stale {
					t.Errorf("after %s: %s with %q: hit=%v, want %v", step.name, req.SQL,
						req.Params[0], res.Hit, !stale)
				}
			}
		}
	})
}

func TestTTLExpiry(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		f := newFixture(t, "memory", nil)
		now := time.Now()
		f.backend.(*Memory).now = func() time.Time { return now }
		req := pointRead("clinician", "1")
		fill(t, f.cache, req, "row", Dep{"public.patients", pseudoA})
		now = now.Add(59 * time.Second)
		wantHit(t, f.cache, req, "row")
		now = now.Add(time.Second)
		wantMiss(t, f.cache, req)
	})
	for _, kind := range []string{"redis", "memcached"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, kind, nil)
			c, err := New(Options{Backend: f.backend, Keys: testKeys(t, "k1"), HashKey: testHashKey,
				Prefix: f.prefix, TTL: time.Second, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			req := pointRead("clinician", "1")
			fill(t, c, req, "row", Dep{"public.patients", pseudoA})
			if len(f.entryKeys(t)) != 1 {
				t.Fatal("entry not stored")
			}
			// The server expires the entry on its own clock: wait for
			// that, then the entry is a miss.
			deadline := time.Now().Add(30 * time.Second)
			for len(f.entryKeys(t)) > 0 {
				if time.Now().After(deadline) {
					t.Fatal("entry with a 1s TTL still there after 30s")
				}
				time.Sleep(100 * time.Millisecond)
			}
			wantMiss(t, c, req)
		})
	}
}

func TestKeyRotation(t *testing.T) {
	eachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		old, fresh := pointRead("clinician", "1"), pointRead("clinician", "2")
		fill(t, f.cache, old, "under k1", Dep{"public.patients", pseudoA})

		// A second key is added in front: the old entry still opens, a
		// new one is sealed under k2.
		rotated := f.newCache(t, testKeys(t, "k2", "k1"), 2*time.Second)
		wantHit(t, rotated, old, "under k1")
		fill(t, rotated, fresh, "under k2", Dep{"public.patients", pseudoB})
		if got := sealedKeyIDs(t, f); !slices.Equal(got, []string{"k1", "k2"}) {
			t.Fatalf("values are sealed under %v, want k1 and k2", got)
		}

		// k1 is removed: its entry is a miss (not an error), k2's hits.
		retired := f.newCache(t, testKeys(t, "k2"), 2*time.Second)
		res := wantMiss(t, retired, old)
		wantHit(t, retired, fresh, "under k2")
		removed := retired.m.m.misses.WithLabelValues(f.kind, "key_removed")
		if got := testutil.ToFloat64(removed); got != 1 {
			t.Fatalf("key_removed misses = %v, want 1", got)
		}
		// The miss refills under the newest key.
		dep := []Dep{{"public.patients", pseudoA}}
		if err := retired.Put(ctx, res.Ticket, []byte("resealed"), dep); err != nil {
			t.Fatal(err)
		}
		wantHit(t, retired, old, "resealed")
		// A cache that never had k2 cannot open what k2 sealed.
		wantMiss(t, f.cache, fresh)
	})
}

// sealedKeyIDs returns the IDs of the keys the backend's values are sealed
// under, sorted.
func sealedKeyIDs(t *testing.T, f *fixture) []string {
	t.Helper()
	var ids []string
	for _, name := range f.entryKeys(t) {
		p, err := f.backend.Lookup(context.Background(), name)
		if err != nil || p.Record == nil {
			t.Fatalf("lookup %s: %+v %v", name, p, err)
		}
		s := p.Record.Sealed
		ids = append(ids, string(s[2:2+s[1]]))
	}
	slices.Sort(ids)
	return ids
}

func TestAlteredRecordsDoNotOpen(t *testing.T) {
	f := newFixture(t, "redis", nil)
	ctx := context.Background()
	a, b := pointRead("clinician", "1"), pointRead("clinician", "2")
	fill(t, f.cache, a, "patient 1", Dep{"public.patients", pseudoA})
	fill(t, f.cache, b, "patient 2", Dep{"public.patients", pseudoB})
	rc := redis.NewClient(&redis.Options{Addr: f.srv.addr})
	defer rc.Close()
	nameA, nameB := f.cache.names.entry(a), f.cache.names.entry(b)

	// B's value and marks moved under A's name: authentication fails.
	fields := rc.HGetAll(ctx, nameB).Val()
	rc.HSet(ctx, nameA, "v", fields["v"], "d", fields["d"], "m", fields["m"])
	res, err := f.cache.Get(ctx, a)
	if err == nil || res.Hit {
		t.Fatalf("moved value: hit=%v %q err=%v, want a miss and an error", res.Hit, res.Value, err)
	}
	if strings.Contains(err.Error(), "patient") {
		t.Fatalf("error shows the value: %v", err)
	}

	// A dependency dropped from A's list of marks: authentication fails.
	if err := f.cache.Put(ctx, res.Ticket, []byte("patient 1"),
		[]Dep{{"public.patients", pseudoA}}); err != nil {
		t.Fatal(err)
	}
	wantHit(t, f.cache, a, "patient 1")
	marks := strings.Fields(rc.HGet(ctx, nameA, "d").Val())
	rc.HSet(ctx, nameA, "d", strings.Join(marks[:len(marks)-1], " "))
	if res, err := f.cache.Get(ctx, a); err == nil || res.Hit {
		t.Fatalf("altered marks: hit=%v err=%v, want a miss and an error", res.Hit, err)
	}
	if got := testutil.ToFloat64(f.cache.m.m.errors.WithLabelValues("redis", "open")); got != 2 {
		t.Fatalf("open errors = %v, want 2", got)
	}
}

func TestEraseRemovesEveryEntryOfTheSubject(t *testing.T) {
	eachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		var ofA []*Request
		for i, role := range []string{"clinician", "researcher", "billing"} {
			for j, sql := range []string{"SELECT * FROM patients WHERE id = $1",
				"SELECT * FROM encounters WHERE patient_id = $1"} {
				req := &Request{Role: role, SQL: sql, Params: [][]byte{[]byte("1")}}
				table := []string{"public.patients", "public.encounters"}[j]
				fill(t, f.cache, req, fmt.Sprintf("A %d %d", i, j), Dep{table, pseudoA})
				ofA = append(ofA, req)
			}
		}
		both := &Request{Role: "clinician", SQL: "SELECT * FROM patients WHERE id IN ($1, $2)"}
		fill(t, f.cache, both, "A and B", Dep{"public.patients", pseudoA},
			Dep{"public.patients", pseudoB})
		ofA = append(ofA, both)
		onlyB := pointRead("clinician", "2")
		fill(t, f.cache, onlyB, "B", Dep{"public.patients", pseudoB})
		before := len(f.entryKeys(t))

		if err := f.cache.Erase(ctx, pseudoA); err != nil {
			t.Fatal(err)
		}
		if after := len(f.entryKeys(t)); after != before-len(ofA) {
			t.Fatalf("backend holds %d entries after erasure, want %d", after, before-len(ofA))
		}
		for _, req := range ofA {
			wantMiss(t, f.cache, req)
		}
		wantHit(t, f.cache, onlyB, "B")
	})
}

func TestFlushMakesEverythingStale(t *testing.T) {
	eachBackend(t, func(t *testing.T, f *fixture) {
		a, b := pointRead("clinician", "1"), pointRead("researcher", "2")
		fill(t, f.cache, a, "A", Dep{"public.patients", pseudoA})
		fill(t, f.cache, b, "B", Dep{"public.encounters", ""})
		other := f.newCache(t, testKeys(t, "k1"), 2*time.Second)
		if err := other.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantMiss(t, f.cache, a)
		wantMiss(t, f.cache, b)
	})
}

func TestOpenFromConfiguration(t *testing.T) {
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	for _, kind := range backendKinds {
		t.Run(kind, func(t *testing.T) {
			src := "clusters: {a: {url: postgres://x}}\npolicies: [p.yaml]\ncache:\n" +
				"  backend: " + kind + "\n  prefix: '" + testPrefix() + "'\n" +
				"  hash_key: " + key + "\n  keys: [{id: k1, secret: " + key + "}]\n"
			if kind != "memory" {
				src += "  address: " + sharedServer(t, kind).addr + "\n"
			}
			cfg, err := config.Parse("privata.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			c, err := Open(&cfg.Cache, NewMetrics(nil))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Backend().Name() != kind {
				t.Fatalf("backend = %s", c.Backend().Name())
			}
			req := pointRead("clinician", "1")
			fill(t, c, req, "row", Dep{"public.patients", pseudoA})
			wantHit(t, c, req, "row")
		})
	}
	t.Run("off", func(t *testing.T) {
		cfg := config.Default()
		cfg.Cache.Backend = "off"
		c, err := Open(&cfg.Cache, nil)
		if err != nil || c != nil {
			t.Fatalf("off: %v, %v", c, err)
		}
		res := get(t, c, pointRead("clinician", "1"))
		if res.Hit || res.Ticket.Valid() {
			t.Fatal("a cache that is off answered or gave a ticket")
		}
	})
	t.Run("shared backend needs keys", func(t *testing.T) {
		_, err := New(Options{Backend: &Redis{}, TTL: time.Minute, Timeout: time.Second})
		if err == nil {
			t.Fatal("a shared backend without keys was accepted")
		}
	})
}

func TestMetricLabelsAreFixedWords(t *testing.T) {
	f := newFixture(t, "memory", nil)
	ctx := context.Background()
	req := pointRead("clinician", "999-17-5017")
	fill(t, f.cache, req, "Maynard46", Dep{"public.patients", pseudoA})
	wantHit(t, f.cache, req, "Maynard46")
	f.cache.Invalidate(ctx, Change{Table: "public.patients", Subject: pseudoA, Op: Update})
	NewInvalidator(f.cache).Apply(ctx, []Change{{Table: "public.patients", Subject: pseudoA,
		Commit: time.Now()}})
	f.cache.Erase(ctx, pseudoA)

	allowed := map[string]bool{"memory": true}
	for _, w := range strings.Fields("absent stale key_removed bypass unsafe error stored skipped " +
		"stream write erase flush lookup store bump drop open") {
		allowed[w] = true
	}
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) < 5 {
		t.Fatalf("only %d metric families", len(families))
	}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if !allowed[l.GetValue()] {
					t.Errorf("%s has label %s=%q", fam.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}
