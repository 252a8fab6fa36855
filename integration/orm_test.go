package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privata/privata/config"
	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/proxy"
	"github.com/privata/privata/storage"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// app is one application under apps/ and one way it creates its schema.
type app struct {
	name   string // subtest name
	dir    string // folder under apps/
	schema string // APP_SCHEMA; empty when the app has one way
	// direct, when set, says why the app runs directly against
	// PostgreSQL instead of through Privata.
	direct string
}

var apps = []app{
	{"prisma", "prisma", "", ""},
	{"sequelize/sync", "sequelize", "sync", ""},
	{"sequelize/migrations", "sequelize", "migrations", ""},
	{"typeorm/synchronize", "typeorm", "synchronize", ""},
	{"typeorm/migrations", "typeorm", "migrations", ""},
	{"knex", "knex", "", ""},
	{"pg", "pg", "", ""},
	{"drizzle", "drizzle", "", ""},
}

// appDatabaseURL is the URL the applications get for db: Privata in front
// of it, with apps/policy.yaml applied to the empty database with missing
// tables allowed, so that every app's migrations create its tables through
// Privata, which splits them. Apps connect as clinician (trust).
func appDatabaseURL(t *testing.T, db *pgtest.DB) string {
	t.Helper()
	ctx := context.Background()
	file, err := filepath.Abs(filepath.Join("apps", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	conn := db.Connect(t)
	defer conn.Close(ctx)
	target := storage.Target{Name: "local", URL: db.URL(), Regions: []string{"local"}}
	if _, err := storage.Apply(ctx, conn, pol, target, storage.AllowMissing()); err != nil {
		t.Fatalf("apply: %v", err)
	}
	// The application's role creates its tables (and Drizzle its schema),
	// as an application's migration role does.
	if _, err := conn.Exec(ctx, "GRANT CREATE, USAGE ON SCHEMA public TO clinician; GRANT CREATE ON DATABASE "+
		pgx.Identifier{db.Name}.Sanitize()+" TO clinician"); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Clusters = map[string]*config.Cluster{"local": {URL: config.Env(db.URL())}}
	cfg.Policies = []string{file}
	cfg.Auth.Method = "trust"
	srv, err := proxy.New(cfg, pol, proxy.Options{Targets: []storage.Target{target}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return fmt.Sprintf("postgres://clinician@%s/%s?sslmode=disable", l.Addr(), db.Name)
}

// summary is the one line of JSON an app prints when it passes.
type summary struct {
	App        string           `json:"app"`
	Migrate    string           `json:"migrate"`
	Steps      []map[string]any `json:"steps"`
	Patients   int              `json:"patients"`
	Encounters int              `json:"encounters"`
	OK         bool             `json:"ok"`
}

func TestApps(t *testing.T) {
	pol, err := policy.Load(filepath.Join("apps", "policy.yaml"))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	cluster := pgtest.Shared(t)
	for _, a := range apps {
		t.Run(a.name, func(t *testing.T) {
			install(t, a.dir)
			db := pgtest.NewDB(t, cluster)
			url := db.URL()
			if a.direct == "" {
				url = appDatabaseURL(t, db)
			} else {
				t.Logf("%s runs directly against PostgreSQL: %s", a.name, a.direct)
			}
			sum, values := runApp(t, a, url)

			conn := db.Connect(t)
			checkCounts(t, conn, sum)
			checkPolicyFits(t, conn, pol)
			checkStorage(t, conn, pol, values, url != db.URL())
		})
	}
}

// runApp runs the app against url and returns its summary and the values it
// reports. It fails the test with the app's output when the app fails.
func runApp(t *testing.T, a app, url string) (summary, []Value) {
	t.Helper()
	valuesFile := filepath.Join(t.TempDir(), "values.json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, "node", "app.js")
	cmd.Dir = filepath.Join("apps", a.dir)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "PRIVATA_APP_VALUES="+valuesFile,
		"APP_SCHEMA="+a.schema, "TZ=UTC")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", a.name, err, stdout.String(), stderr.String())
	}

	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var sum summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("%s: last line of output is not its summary: %v\n%s", a.name, err, stdout.String())
	}
	if !sum.OK || sum.App != a.dir {
		t.Fatalf("%s: summary says app %q ok %v", a.name, sum.App, sum.OK)
	}
	t.Logf("%s: %s", a.name, lines[len(lines)-1])

	report, err := ReadReport(valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	return sum, report.Values
}

// checkCounts compares the app's final counts with the database's.
func checkCounts(t *testing.T, conn *pgx.Conn, sum summary) {
	t.Helper()
	for table, want := range map[string]int{"patients": sum.Patients, "encounters": sum.Encounters} {
		var got int
		q := "SELECT count(*) FROM " + pgx.Identifier{"public", table}.Sanitize()
		if err := conn.QueryRow(context.Background(), q).Scan(&got); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		if got != want {
			t.Errorf("%s: the database has %d rows, the app reports %d", table, got, want)
		}
	}
}

// checkPolicyFits checks that the schema the ORM created has every table and
// column apps/policy.yaml names.
func checkPolicyFits(t *testing.T, conn *pgx.Conn, pol *policy.Policy) {
	t.Helper()
	cat, err := loadCatalog(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.CheckDatabase(pol, cat); err != nil {
		t.Errorf("apps/policy.yaml does not fit the schema: %v", err)
	}
}

// checkStorage checks the cluster directly: split storage when the app went
// through Privata, plain tables holding every reported value otherwise.
func checkStorage(t *testing.T, conn *pgx.Conn, pol *policy.Policy, values []Value,
	throughPrivata bool) {
	t.Helper()
	ctx := context.Background()
	var split bool
	err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)",
		IdentitySchema).Scan(&split)
	if err != nil {
		t.Fatal(err)
	}
	if split != throughPrivata {
		t.Fatalf("schema %s exists: %v; the app went through Privata: %v",
			IdentitySchema, split, throughPrivata)
	}

	var findings []Finding
	if split {
		findings, err = CheckSplit(ctx, conn, pol, values)
		if err == nil {
			var more []Finding
			more, err = CheckRoles(ctx, conn, pol, values)
			findings = append(findings, more...)
		}
	} else {
		findings, err = CheckPlain(ctx, conn, values)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Error(f)
	}
}

type catalog map[[2]string][]string

func loadCatalog(ctx context.Context, conn *pgx.Conn) (catalog, error) {
	rows, err := conn.Query(ctx, `SELECT table_schema::text, table_name::text,
	       array_agg(column_name::text ORDER BY ordinal_position)
	  FROM information_schema.columns GROUP BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	cat := catalog{}
	var schema, name string
	var cols []string
	_, err = pgx.ForEachRow(rows, []any{&schema, &name, &cols}, func() error {
		cat[[2]string{schema, name}] = cols
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	return cat, nil
}

func (c catalog) Columns(schema, name string) ([]string, bool) {
	cols, ok := c[[2]string{schema, name}]
	return cols, ok
}

// installs remembers, per app folder, the outcome of install in this run.
var installs sync.Map // folder -> func() error

// install runs `npm ci` and the app's setup script (Prisma's generate) in
// apps/dir, once per test run, and not at all when node_modules was installed
// from the same lockfile before.
func install(t *testing.T, dir string) {
	t.Helper()
	once, _ := installs.LoadOrStore(dir, sync.OnceValue(func() error { return npmCI(dir) }))
	if err := once.(func() error)(); err != nil {
		t.Fatal(err)
	}
}

// stampFile records in node_modules which lockfile it was installed from.
const stampFile = ".privata-installed"

func npmCI(dir string) error {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: the ORM apps need Node 20 and npm "+
				"(Debian: apt-get install nodejs npm)", tool)
		}
	}
	path := filepath.Join("apps", dir)
	h := sha256.New()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(path, f))
		if err != nil {
			return fmt.Errorf("install %s: %w", dir, err)
		}
		h.Write(b)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	stamp := filepath.Join(path, "node_modules", stampFile)
	if b, err := os.ReadFile(stamp); err == nil && string(b) == sum {
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	steps := [][]string{
		{"npm", "ci", "--no-audit", "--no-fund"},
		{"npm", "run", "--if-present", "setup"},
	}
	for _, step := range steps {
		cmd := exec.CommandContext(ctx, step[0], step[1:]...)
		cmd.Dir = path
		cmd.Env = os.Environ()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s in apps/%s: %w\n%s", strings.Join(step, " "), dir, err, out)
		}
	}
	if err := os.WriteFile(stamp, []byte(sum), 0o644); err != nil {
		return fmt.Errorf("install %s: %w", dir, err)
	}
	return nil
}
