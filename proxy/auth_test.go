package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/privata/privata/config"
)

// connectErr connects through Privata and returns the error's SQLSTATE
// ("" when the connection succeeded).
func connectErr(t *testing.T, url string) (string, *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
		return "", conn
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, nil
	}
	t.Fatalf("connect: %v (no SQLSTATE)", err)
	return "", nil
}

func currentUser(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var who string
	if err := conn.QueryRow(context.Background(), "SELECT current_user").Scan(&who); err != nil {
		t.Fatal(err)
	}
	return who
}

func TestScramUsersFromConfig(t *testing.T) {
	v, err := NewVerifier("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{auth: config.Auth{Method: "scram", Users: map[string]*config.User{
		"bob": {Password: config.Env(v.String()), Role: "analyst"},
	}}})
	withPassword := func(user, pw string) string {
		return strings.Replace(e.url(user), user+"@", user+":"+pw+"@", 1)
	}
	code, conn := connectErr(t, withPassword("bob", "correct%20horse"))
	if code != "" {
		t.Fatalf("right password refused: %s", code)
	}
	if who := currentUser(t, conn); who != "analyst" {
		t.Fatalf("bob runs as %q, want the analyst role", who)
	}
	for _, tc := range []struct{ name, url string }{
		{"wrong password", withPassword("bob", "wrong")},
		{"unknown user", withPassword("mallory", "correct%20horse")},
		{"no password", e.url("bob")},
	} {
		if code, _ := connectErr(t, tc.url); code != codeInvalidPassword {
			t.Errorf("%s: SQLSTATE %q, want 28P01", tc.name, code)
		}
	}
	if got := counterValue(t, e, "privata_client_connections_total", "refused"); got != 3 {
		t.Errorf("refused connections = %v, want 3", got)
	}
}

func TestAuthQueryLooksUpVerifiersUpstream(t *testing.T) {
	e := newEnv(t, envOptions{auth: config.Auth{Method: "auth_query", DefaultRole: "reception"}})
	code, conn := connectErr(t, strings.Replace(e.url("alice"), "alice@", "alice:alice-secret@", 1))
	if code != "" {
		t.Fatalf("alice refused: %s", code)
	}
	if who := currentUser(t, conn); who != "reception" {
		t.Fatalf("alice runs as %q, want the default role reception", who)
	}
	wrong := strings.Replace(e.url("alice"), "alice@", "alice:nope@", 1)
	if code, _ := connectErr(t, wrong); code != codeInvalidPassword {
		t.Fatalf("wrong password: %q, want 28P01", code)
	}
	// A role without a password has no verifier: refused like a wrong password.
	noVerifier := strings.Replace(e.url("clinician_md5"), "@", ":x@", 1)
	if code, _ := connectErr(t, noVerifier); code != codeInvalidPassword {
		t.Fatalf("user without verifier: %q, want 28P01", code)
	}
}

func TestStartupIsCheckedAndPassedUpstream(t *testing.T) {
	e := newEnv(t, envOptions{})
	if code, _ := connectErr(t, e.url("nobody")); code != codeInvalidAuthSpec {
		t.Errorf("user without policy role: %q, want 28000", code)
	}
	other := strings.Replace(e.url("clinician"), "/"+e.db.Name+"?", "/otherdb?", 1)
	if code, _ := connectErr(t, other); code != codeInvalidCatalog {
		t.Errorf("other database: %q, want 3D000", code)
	}
	for _, opt := range []string{"-c%20role%3Descalated", "-c%20session_authorization%3Dpostgres"} {
		if code, _ := connectErr(t, e.url("clinician")+"&options="+opt); code != codeInsufficientPriv {
			t.Errorf("options %s: %q, want 42501", opt, code)
		}
	}
	scs := e.url("clinician") + "&options=-c%20standard_conforming_strings%3Doff"
	if code, _ := connectErr(t, scs); code != codeFeatureNotSupport {
		t.Errorf("standard_conforming_strings=off: %q, want 0A000", code)
	}
	// In SJIS, 0x95 0x5C is one character: PostgreSQL would read
	// E'\x95\' as an unterminated string's start where Privata, reading
	// UTF8, sees a complete one, and run what Privata took for its
	// contents. A client encoding other than UTF8 or SQL_ASCII is refused
	// however it is asked for.
	for _, enc := range []string{"&client_encoding=SJIS", "&client_encoding=EUC_JP",
		"&options=-c%20client_encoding%3DBIG5"} {
		if code, _ := connectErr(t, e.url("clinician")+enc); code != codeFeatureNotSupport {
			t.Errorf("%s: %q, want 0A000", enc, code)
		}
	}
	admin := e.admin(t)
	if _, err := admin.Exec(context.Background(), "ALTER ROLE privata_session SET client_encoding = 'GBK'"); err != nil {
		t.Fatal(err)
	}
	code, _ := connectErr(t, e.url("clinician"))
	if _, err := admin.Exec(context.Background(), "ALTER ROLE privata_session RESET client_encoding"); err != nil {
		t.Fatal(err)
	}
	if code != codeFeatureNotSupport {
		t.Errorf("client_encoding GBK set on the upstream login: %q, want 0A000", code)
	}
	// SQL_ASCII (psql's choice in the C locale) is read as UTF8 by both.
	if code, conn := connectErr(t, e.url("clinician")+"&client_encoding=SQL_ASCII"); code != "" {
		t.Errorf("client_encoding SQL_ASCII: %q, want a session", code)
	} else if who := currentUser(t, conn); who != "clinician" {
		t.Errorf("client_encoding SQL_ASCII: current_user = %q", who)
	}

	url := e.url("clinician") + "&application_name=ward%207&search_path=pg_catalog,public" +
		"&timezone=Europe/Stockholm&options=-c%20privata.actor%3Ddr%5C%20who%20-c%20statement_timeout%3D5min"
	code, conn := connectErr(t, url)
	if code != "" {
		t.Fatalf("connect with parameters: %s", code)
	}
	var app, path, tz, actor, timeout string
	err := conn.QueryRow(context.Background(), "SELECT current_setting('application_name'), "+
		"current_setting('search_path'), current_setting('TimeZone'), "+
		"current_setting('privata.actor'), current_setting('statement_timeout')").
		Scan(&app, &path, &tz, &actor, &timeout)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s|%s|%s|%s|%s", app, path, tz, actor, timeout)
	if want := "ward 7|pg_catalog,public|Europe/Stockholm|dr who|5min"; got != want {
		t.Fatalf("settings upstream %q, want %q", got, want)
	}
}

func TestTLSWithConfiguredCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	e := newEnv(t, envOptions{tlsCert: cert, tlsKey: key})
	url := strings.Replace(e.url("clinician"), "sslmode=disable", "sslmode=require", 1)
	code, conn := connectErr(t, url)
	if code != "" {
		t.Fatalf("tls connect: %s", code)
	}
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("connection is %T, not TLS", conn.PgConn().Conn())
	}
	if who := currentUser(t, conn); who != "clinician" {
		t.Fatalf("current_user %q", who)
	}
	// Without a certificate configured, SSLRequest is answered N.
	plain := newEnv(t, envOptions{})
	url = strings.Replace(plain.url("clinician"), "sslmode=disable", "sslmode=require", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pgx.Connect(ctx, url); err == nil || !strings.Contains(err.Error(), "refused TLS") {
		t.Fatalf("sslmode=require without a certificate: %v", err)
	}
}

func writeSelfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

func TestVerifierRoundTripAndErrors(t *testing.T) {
	v, err := NewVerifier("pässwörd")
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseVerifier(v.String())
	if err != nil || back.String() != v.String() {
		t.Fatalf("round trip: %v %v", back, err)
	}
	if _, err := ParseVerifier("md5abcdef"); err == nil || strings.Contains(err.Error(), "abcdef") {
		t.Fatalf("md5 hash: err %v (must not quote the input)", err)
	}
	if _, err := ParseVerifier("SCRAM-SHA-256$4096:c2FsdA==$YQ==:Yg=="); err == nil {
		t.Fatal("short keys accepted")
	}
}
