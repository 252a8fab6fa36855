package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/cache"
	"github.com/privata/privata/internal/audittest"
	"github.com/privata/privata/internal/pgtest"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// readPolicy classifies readSchema: patients is the subject table,
// encounters a child table; clinician sees everything, analyst no
// identity, reception masked identity and no clinical data.
const readPolicy = `version: 1
regions:
  main: {cluster: main}
subjects:
  patients:
    key: id
    identity: [ssn, first, last, birthdate]
    clinical: [marital, gender, notes]
children:
  encounters:
    subject: {table: patients, column: patient}
roles:
  clinician: {identity: full, clinical: full}
  analyst: {identity: none, clinical: full}
  reception: {identity: masked, clinical: none}
`

const readSchema = `
CREATE TABLE public.patients (
    id uuid PRIMARY KEY,
    ssn text, first text, last text, birthdate date,
    marital text, gender text, notes text
);
CREATE TABLE public.encounters (
    id uuid PRIMARY KEY,
    patient uuid REFERENCES public.patients (id),
    start timestamptz, description text, cost numeric
);`

// testPatient is a patient of the read tests: the values no audit record
// may hold, and the pseudonym the records name.
type testPatient struct {
	ID, SSN, First, Last, Notes string
	Diagnoses                   []string
	Pseudonym                   audit.Pseudonym
}

// readEnv is a Privata server in front of a split database with patients,
// its read audit written to the database's own store.
type readEnv struct {
	*env
	store    *audit.Store
	writer   *audit.Writer
	patients []*testPatient
}

type readOptions struct {
	cache   *cache.Cache
	noAudit bool
	// auditor, when set, takes the records instead of a writer.
	auditor  ReadAuditor
	writerOf func(t testing.TB, db *pgtest.DB) (*audit.Store, *audit.Writer)
}

func newReadEnv(t testing.TB, o readOptions) *readEnv {
	t.Helper()
	re := &readEnv{}
	setup := func(db *pgtest.DB) {
		db.Exec(t, readSchema)
		p, err := policy.Parse("policy.yaml", []byte(readPolicy))
		if err != nil {
			t.Fatal(err)
		}
		conn := db.Connect(t)
		target := storage.Target{Name: "main", URL: db.URL(), Regions: []string{"main"}}
		if _, err := storage.Apply(context.Background(), conn, p, target); err != nil {
			t.Fatalf("apply the policy: %v", err)
		}
		re.patients = loadPatients(t, conn, 6)
		if o.noAudit {
			return
		}
		if o.writerOf != nil {
			re.store, re.writer = o.writerOf(t, db)
			return
		}
		re.store, re.writer = openWriter(t, db.URL(), audit.WriterOptions{})
	}
	eo := envOptions{policy: readPolicy, setup: setup, cache: o.cache}
	switch {
	case o.auditor != nil:
		eo.audit = func(string) ReadAuditor { return o.auditor }
	case !o.noAudit:
		eo.audit = func(string) ReadAuditor { return re.writer }
	}
	re.env = newEnv(t, eo)
	return re
}

// openWriter opens the audit store at url and a read-audit writer on it.
func openWriter(t testing.TB, url string, wo audit.WriterOptions) (*audit.Store, *audit.Writer) {
	t.Helper()
	ctx := context.Background()
	s, err := audit.Open(ctx, "main", url)
	if err != nil {
		t.Fatal(err)
	}
	if wo.Dir == "" {
		wo.Dir = t.TempDir()
	}
	if wo.Fsync == "" {
		wo.Fsync = audit.FsyncNever
	}
	w, err := audit.OpenWriter(ctx, s, wo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.Close(ctx)
		s.Close()
	})
	return s, w
}

// loadPatients inserts n patients with three encounters each through the
// application's views, and reads back their pseudonyms.
func loadPatients(t testing.TB, conn *pgx.Conn, n int) []*testPatient {
	t.Helper()
	ctx := context.Background()
	var out []*testPatient
	for i := range n {
		p := &testPatient{
			ID:    fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1),
			SSN:   fmt.Sprintf("999-%02d-%04d", 10+i, 4321+i),
			First: fmt.Sprintf("Ysolde%d", i), Last: fmt.Sprintf("Quennell%d", i),
			Notes: fmt.Sprintf("allergic to penicillin variant %d", i),
		}
		_, err := conn.Exec(ctx, `INSERT INTO public.patients (id, ssn, first, last, birthdate,
			marital, gender, notes) VALUES ($1, $2, $3, $4, '1970-01-02', 'M', 'F', $5)`,
			p.ID, p.SSN, p.First, p.Last, p.Notes)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			d := fmt.Sprintf("Diagnosis-%c%d", 'A'+i, j)
			p.Diagnoses = append(p.Diagnoses, d)
			_, err := conn.Exec(ctx, `INSERT INTO public.encounters (id, patient, start,
				description, cost) VALUES ($1, $2, $3, $4, 100)`,
				fmt.Sprintf("10000000-0000-4000-8000-%06d%06d", i+1, j+1), p.ID,
				time.Date(2020, 1, 1+j, 0, 0, 0, 0, time.UTC), d)
			if err != nil {
				t.Fatal(err)
			}
		}
		err = conn.QueryRow(ctx, `SELECT privata_pseudonym FROM privata_identity.patients
			WHERE id = $1`, p.ID).Scan(&p.Pseudonym)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// readRecord is a read_log row as the tests look at it.
type readRecord struct {
	Seq         int64
	Actor       string
	Role        string
	Purpose     string
	Application string
	BreakGlass  bool
	Statement   string
	Columns     []string
	Decision    string
	Reason      string
	Rows        int64
	Subjects    []string
}

// records flushes the writer and returns the read records in order.
func (re *readEnv) records(t testing.TB) []readRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := re.writer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := re.store.Pool().Query(ctx, `SELECT seq, coalesce(actor, ''), coalesce(role, ''),
		coalesce(purpose, ''), coalesce(application, ''), break_glass, statement, columns,
		decision, coalesce(reason, ''), rows, subjects::text[]
		FROM privata_audit.read_log ORDER BY chain, seq`)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[readRecord])
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		sort.Strings(recs[i].Subjects)
	}
	return recs
}

func pseudonyms(ps ...*testPatient) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Pseudonym.String())
	}
	sort.Strings(out)
	return out
}

// readCase is a statement of a read workload and what its record says.
type readCase struct {
	name    string
	sql     string
	args    []any
	columns int    // result columns the client must see
	rows    int    // rows the client must get
	audited bool   // whether the statement has a record
	who     []int  // indexes of the patients whose rows it returns
	note    string // what the record's reason says, in part
}

func TestReadAuditNamesTheSubjectsWhoseRowsWereReturned(t *testing.T) {
	re := newReadEnv(t, readOptions{})
	P := re.patients
	cases := []readCase{
		{name: "point read", sql: "SELECT ssn, first FROM patients WHERE id = $1",
			args: []any{P[0].ID}, columns: 2, rows: 1, audited: true, who: []int{0}},
		{name: "a child's rows by subject", sql: "SELECT e.description FROM encounters e " +
			"WHERE e.patient = $1 ORDER BY e.start", args: []any{P[1].ID}, columns: 1, rows: 3,
			audited: true, who: []int{1}},
		{name: "join", sql: "SELECT p.last, e.description FROM patients p JOIN encounters e " +
			"ON e.patient = p.id WHERE p.id = $1 OR p.id = $2", args: []any{P[2].ID, P[3].ID},
			columns: 2, rows: 6, audited: true, who: []int{2, 3}},
		{name: "star", sql: "SELECT * FROM public.patients WHERE last LIKE 'Quennell%'",
			columns: 8, rows: len(P), audited: true, who: []int{0, 1, 2, 3, 4, 5}},
		{name: "no row", sql: "SELECT ssn FROM patients WHERE id = $1",
			args: []any{"00000000-0000-4000-8000-999999999999"}, columns: 1, rows: 0,
			audited: true},
		{name: "aggregate", sql: "SELECT count(*) FROM patients WHERE ssn LIKE '999%'",
			columns: 1, rows: 1, audited: true, note: "not attributable: aggregate"},
		{name: "DISTINCT", sql: "SELECT DISTINCT gender FROM patients", columns: 1, rows: 1,
			audited: true, note: "not attributable: DISTINCT"},
		{name: "keys only", sql: "SELECT id FROM patients ORDER BY id", columns: 1,
			rows: len(P)},
		{name: "tags", sql: "/*actor='dr%20who',purpose='treatment'*/ SELECT notes " +
			"FROM patients WHERE id = $1", args: []any{P[4].ID}, columns: 1, rows: 1,
			audited: true, who: []int{4}},
	}
	for _, mode := range modes {
		conn := connectMode(t, re.env, "clinician", mode)
		start := len(re.records(t))
		for _, c := range cases {
			rows, err := conn.Query(context.Background(), c.sql, c.args...)
			if err != nil {
				t.Fatalf("%s %s: %v", mode, c.name, err)
			}
			fields := rows.FieldDescriptions()
			n := 0
			for rows.Next() {
				if vals, err := rows.Values(); err != nil || len(vals) != c.columns {
					t.Fatalf("%s %s: row %v (%v), want %d columns", mode, c.name, vals, err,
						c.columns)
				}
				n++
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("%s %s: %v", mode, c.name, err)
			}
			if len(fields) != c.columns || n != c.rows {
				t.Fatalf("%s %s: %d columns, %d rows; want %d, %d", mode, c.name, len(fields), n,
					c.columns, c.rows)
			}
			for _, f := range fields {
				if strings.HasPrefix(f.Name, "privata") {
					t.Fatalf("%s %s: the client sees column %s", mode, c.name, f.Name)
				}
			}
		}
		recs := re.records(t)[start:]
		i := 0
		for _, c := range cases {
			if !c.audited {
				continue
			}
			if i >= len(recs) {
				t.Fatalf("%s: %d records, the statement %q has none", mode, len(recs), c.name)
			}
			r := recs[i]
			i++
			var who []*testPatient
			for _, k := range c.who {
				who = append(who, P[k])
			}
			if want := pseudonyms(who...); !slices.Equal(r.Subjects, want) {
				t.Errorf("%s %s: subjects %v, want %v", mode, c.name, r.Subjects, want)
			}
			if r.Rows != int64(c.rows) || r.Decision != "allowed" || r.Role != "clinician" {
				t.Errorf("%s %s: record %+v", mode, c.name, r)
			}
			if !strings.Contains(r.Reason, c.note) {
				t.Errorf("%s %s: reason %q, want it to say %q", mode, c.name, r.Reason, c.note)
			}
			if c.name == "tags" && (r.Actor != "dr who" || r.Purpose != "treatment") {
				t.Errorf("%s tags: actor %q purpose %q", mode, r.Actor, r.Purpose)
			}
		}
		if i != len(recs) {
			t.Errorf("%s: %d records, want %d", mode, len(recs), i)
		}
		assertNoPatientValue(t, recs, P)
	}
}

// assertNoPatientValue fails when any record holds a value of the
// patients' data.
func assertNoPatientValue(t *testing.T, recs []readRecord, P []*testPatient) {
	t.Helper()
	for _, r := range recs {
		text := fmt.Sprintf("%+v", r)
		for _, p := range P {
			for _, v := range append([]string{p.ID, p.SSN, p.First, p.Last, p.Notes},
				p.Diagnoses...) {
				if strings.Contains(text, v) {
					t.Fatalf("record %d holds %q: %s", r.Seq, v, text)
				}
			}
		}
	}
}

// TestHiddenColumnsAreStrippedInEveryResultFormat runs a prepared point
// read with each way of asking for result formats, and Describe.
func TestHiddenColumnsAreStrippedInEveryResultFormat(t *testing.T) {
	re := newReadEnv(t, readOptions{})
	P := re.patients
	conn := re.connect(t, "clinician").PgConn()
	ctx := context.Background()
	sd, err := conn.Prepare(ctx, "point", "SELECT first, birthdate, id FROM patients "+
		"WHERE id = $1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.Fields) != 3 {
		t.Fatalf("Describe shows %d columns, want 3", len(sd.Fields))
	}
	start := len(re.records(t))
	for _, formats := range [][]int16{nil, {1}, {0, 1, 1}, {1, 0, 0}} {
		res := conn.ExecPrepared(ctx, "point", [][]byte{[]byte(P[1].ID)}, nil, formats).Read()
		if res.Err != nil {
			t.Fatalf("formats %v: %v", formats, res.Err)
		}
		if len(res.FieldDescriptions) != 3 || len(res.Rows) != 1 || len(res.Rows[0]) != 3 {
			t.Fatalf("formats %v: %d fields, rows %q", formats, len(res.FieldDescriptions),
				res.Rows)
		}
		for i, f := range res.FieldDescriptions {
			want := int16(0)
			switch {
			case len(formats) == 1:
				want = formats[0]
			case len(formats) > 1:
				want = formats[i]
			}
			if f.Format != want {
				t.Errorf("formats %v: column %d has format %d", formats, i, f.Format)
			}
		}
	}
	// Describe of a portal: Bind, Describe, Execute, Sync.
	rr := conn.ExecParams(ctx, "SELECT notes FROM patients WHERE id = $1",
		[][]byte{[]byte(P[2].ID)}, nil, nil, []int16{1}).Read()
	if rr.Err != nil || len(rr.FieldDescriptions) != 1 || len(rr.Rows[0]) != 1 ||
		string(rr.Rows[0][0]) != P[2].Notes {
		t.Fatalf("ExecParams: %v %v %q", rr.Err, rr.FieldDescriptions, rr.Rows)
	}
	recs := re.records(t)[start:]
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}
	for i, r := range recs {
		who := P[1]
		if i == 4 {
			who = P[2]
		}
		if !slices.Equal(r.Subjects, pseudonyms(who)) || r.Rows != 1 {
			t.Errorf("record %d: %+v", i, r)
		}
	}
}

func TestMaskedAndRefusedReadsAreAudited(t *testing.T) {
	re := newReadEnv(t, readOptions{})
	P := re.patients
	ctx := context.Background()
	start := len(re.records(t))
	reception := pgtest.Connect(t, re.url("reception")+"&application_name=front-desk")
	var ssn string
	if err := reception.QueryRow(ctx, "SELECT ssn FROM patients WHERE id = $1",
		P[3].ID).Scan(&ssn); err != nil {
		t.Fatal(err)
	}
	if ssn == P[3].SSN {
		t.Fatal("reception read an unmasked SSN")
	}
	_, err := reception.Exec(ctx, "SELECT ssn, set_config('role', 'clinician', false) "+
		"FROM patients")
	if sqlstate(err) != codeInsufficientPriv {
		t.Fatalf("role change: %v, want 42501", err)
	}
	recs := re.records(t)[start:]
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(recs), recs)
	}
	if r := recs[0]; r.Decision != "masked" || !strings.Contains(r.Reason,
		"identity values masked for role reception") || !slices.Equal(r.Subjects,
		pseudonyms(P[3])) || r.Application != "front-desk" || r.Role != "reception" {
		t.Errorf("masked read: %+v", r)
	}
	if r := recs[1]; r.Decision != "refused" || !strings.Contains(r.Reason, "42501") ||
		r.Rows != 0 || len(r.Subjects) != 0 {
		t.Errorf("refused read: %+v", r)
	}
}

// TestClassifiedStatementsFailClosedWhenAuditCannotBeWritten stops the
// audit store until the spool is full: statements reading classified
// columns are refused with 58000 before they run, others still run, and
// once the store is back everything runs again.
func TestClassifiedStatementsFailClosedWhenAuditCannotBeWritten(t *testing.T) {
	// Committed transactions must survive the kill below.
	storeCluster := pgtest.Start(t, "audit-store", map[string]string{"synchronous_commit": "on"})
	re := newReadEnv(t, readOptions{writerOf: func(t testing.TB, db *pgtest.DB) (*audit.Store,
		*audit.Writer) {
		sdb := pgtest.NewDB(t, storeCluster)
		audittest.Install(t, sdb)
		return openWriter(t, sdb.URL(), audit.WriterOptions{MaxBytes: 16 << 10})
	}})
	P := re.patients
	ctx := context.Background()
	conn := re.connect(t, "clinician")
	if err := storeCluster.Local.Kill(); err != nil {
		t.Fatal(err)
	}
	var refusal error
	for i := 0; refusal == nil; i++ {
		if i > 5000 {
			t.Fatal("statements still ran with the audit store down and the spool over its limit")
		}
		var ssn string
		refusal = conn.QueryRow(ctx, "SELECT ssn FROM patients WHERE id = $1",
			P[i%len(P)].ID).Scan(&ssn)
	}
	var pe *pgconn.PgError
	if !errors.As(refusal, &pe) || pe.Code != codeAuditUnavailable ||
		!strings.Contains(pe.Message, "audit record cannot be written") {
		t.Fatalf("refusal: %v, want 58000 saying the audit record cannot be written", refusal)
	}
	if strings.Contains(pe.Message, P[0].ID) {
		t.Fatalf("the refusal shows a value: %v", pe)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_class").Scan(&n); err != nil {
		t.Fatalf("an unclassified statement with the audit store down: %v", err)
	}
	// The simple protocol sees the same refusal.
	sconn := connectMode(t, re.env, "clinician", pgx.QueryExecModeSimpleProtocol)
	if _, err := sconn.Exec(ctx, "SELECT notes FROM patients"); sqlstate(err) !=
		codeAuditUnavailable {
		t.Fatalf("simple protocol: %v, want 58000", err)
	}
	if err := storeCluster.Local.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "reads run again once the store is back", func() error {
		var ssn string
		return conn.QueryRow(ctx, "SELECT ssn FROM patients WHERE id = $1", P[0].ID).Scan(&ssn)
	})
}

// TestReadAuditFollowsEveryWayRowsLeave covers the protocol paths rows take:
// several statements in one Query, a portal fetched in parts, COPY TO, a
// statement that fails after rows, and a result too large to hold whole.
func TestReadAuditFollowsEveryWayRowsLeave(t *testing.T) {
	re := newReadEnv(t, readOptions{})
	P := re.patients
	w := re.wire(t, "clinician")
	start := len(re.records(t))

	w.send(&pgproto3.Query{String: fmt.Sprintf("SELECT ssn FROM patients WHERE id = '%s'; "+
		"SELECT 1; SELECT notes, gender FROM patients WHERE id = '%s'", P[0].ID, P[1].ID)})
	expect(t, w.recv("ReadyForQuery"), "RowDescription", "DataRow:"+P[0].SSN,
		"CommandComplete:SELECT 1", "RowDescription", "DataRow:1", "CommandComplete:SELECT 1",
		"RowDescription", "DataRow:"+P[1].Notes+",F", "CommandComplete:SELECT 1",
		"ReadyForQuery:I")

	w.send(&pgproto3.Parse{Name: "s", Query: "SELECT first FROM patients ORDER BY id"},
		&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"},
		&pgproto3.Execute{Portal: "p", MaxRows: 4},
		&pgproto3.Execute{Portal: "p", MaxRows: 4},
		&pgproto3.Sync{})
	expect(t, w.recv("ReadyForQuery"), "ParseComplete", "BindComplete",
		"DataRow:"+P[0].First, "DataRow:"+P[1].First, "DataRow:"+P[2].First,
		"DataRow:"+P[3].First, "PortalSuspended", "DataRow:"+P[4].First,
		"DataRow:"+P[5].First, "CommandComplete:SELECT 2", "ReadyForQuery:I")

	// The header line is a CopyData message but not a row.
	w.send(&pgproto3.Query{String: "COPY (SELECT last FROM patients) TO STDOUT (FORMAT csv, HEADER)"})
	got := w.recv("ReadyForQuery")
	if len(got) != 1+1+len(P)+3 || got[len(got)-2] != "CommandComplete:COPY 6" {
		t.Fatalf("COPY: %q", got)
	}

	w.send(&pgproto3.Query{String: "SELECT 10 / (id::text::bytea = '\\x00'::bytea)::int, " +
		"ssn FROM patients"})
	got = w.recv("ReadyForQuery")
	if got[len(got)-2] != "Error:22012" {
		t.Fatalf("division by zero: %q", got)
	}

	w.send(&pgproto3.Query{String: "SELECT p.notes, repeat('x', 100000) FROM patients p, " +
		"generate_series(1, 10)"})
	got = w.recv("ReadyForQuery")
	if len(got) != 1+60+2 {
		t.Fatalf("large result: %d messages", len(got))
	}

	recs := re.records(t)[start:]
	want := []struct {
		rows int64
		who  []*testPatient
		note string
	}{
		{1, []*testPatient{P[0]}, ""},
		{1, []*testPatient{P[1]}, ""},
		{4, P[:4], "portal suspended"},
		{2, P[4:], ""},
		{6, nil, "not attributable: not a SELECT"},
		{0, nil, "the statement failed"},
		{-1, P, "part 1 of a larger result"},
		{-1, P, "last part (2) of a larger result"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(recs), len(want), recs)
	}
	if n := recs[6].Rows + recs[7].Rows; n != 60 {
		t.Errorf("the parts of the large result hold %d rows, want 60", n)
	}
	for i, w := range want {
		r := recs[i]
		if w.rows >= 0 && r.Rows != w.rows || !slices.Equal(r.Subjects, pseudonyms(w.who...)) ||
			!strings.Contains(r.Reason, w.note) {
			t.Errorf("record %d: rows %d subjects %v reason %q; want %d %v %q", i, r.Rows,
				r.Subjects, r.Reason, w.rows, pseudonyms(w.who...), w.note)
		}
	}
	assertNoPatientValue(t, recs, P)
}

// brokenSpool is a read auditor whose spool fails between Check and
// Append, as a disk that fills up at that moment would.
type brokenSpool struct{}

func (brokenSpool) Check() error { return nil }
func (brokenSpool) Append(context.Context, *audit.Read) error {
	return &audit.UnavailableError{Store: "main", Err: errors.New("spool write: no space left")}
}

// TestAppendFailingAfterCheckEndsTheSession: the rows of a statement whose
// record could not be made durable never reach the client, and the session
// ends (its transaction rolled back upstream).
func TestAppendFailingAfterCheckEndsTheSession(t *testing.T) {
	re := newReadEnv(t, readOptions{noAudit: true, auditor: brokenSpool{}})
	P := re.patients
	w := re.wire(t, "clinician")
	w.send(&pgproto3.Query{String: "SELECT ssn FROM patients WHERE id = '" + P[0].ID + "'"})
	got := w.recv("Error")
	expect(t, got, "Error:"+codeAuditUnavailable)
	for _, m := range got {
		if strings.Contains(m, P[0].SSN) {
			t.Fatalf("the client got the row: %q", got)
		}
	}
	w.conn.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := w.fe.Receive(); err == nil {
		t.Fatal("the session went on after its read could not be audited")
	}
}
