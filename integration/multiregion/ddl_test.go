package multiregion

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// DDL on a classified table changes the session's own region's cluster;
// Privata says that the other regions' clusters need it too.
func TestDDLReachesTheSessionsClusterOnly(t *testing.T) {
	w := newWorld(t, shared(t, "us", "eu"), clinicPolicy)
	w.start(t)
	// The application's migrations run as clinician.
	if _, err := w.regions["us"].conn.Exec(ctx, "GRANT CREATE ON SCHEMA public TO clinician"); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("postgres://clinician@%s/%s?sslmode=disable", w.serve.addr,
		w.regions[w.region].db.Name))
	if err != nil {
		t.Fatal(err)
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, `ALTER TABLE patients ADD COLUMN nickname text`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "tables of region us only") ||
		!strings.Contains(notices[0], "regions eu need the same DDL") {
		t.Errorf("notices: %q", notices)
	}
	has := func(r *region) int {
		return r.count(t, `SELECT count(*) FROM information_schema.columns
			WHERE table_schema = 'public' AND table_name = 'patients' AND column_name = 'nickname'`)
	}
	if us, eu := has(w.regions["us"]), has(w.regions["eu"]); us != 1 || eu != 0 {
		t.Errorf("nickname: %d in us, %d in eu", us, eu)
	}
	// The views the other region reads through postgres_fdw are made
	// again around DDL that drops the split table's views.
	if _, err := pc.Exec(ctx, `ALTER TABLE patients DROP COLUMN nickname`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if n := has(w.regions["us"]); n != 0 {
		t.Errorf("nickname still in us")
	}
	if n := w.regions["us"].count(t, `SELECT count(*) FROM pg_views WHERE schemaname = 'privata_export'`); n == 0 {
		t.Errorf("no export views after the DDL")
	}
}
