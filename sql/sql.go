// Package sql holds the SQL that Privata installs into every cluster: the
// schema privata (pseudonyms, session context, masking), and the schemas
// other packages build on. The files are embedded in the binary, applied in
// name order, each idempotent, in one transaction under an advisory lock.
//
// The row in privata.version records which content is installed (a hash of
// the files) and which Privata version wrote it, so that installing the same
// content again does nothing and an older binary does not downgrade a
// database a newer one installed.
package sql

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"

	"github.com/jackc/pgx/v5"
)

// Version is the schema version of the embedded files. Bump it whenever a
// file changes in a way an older binary must not undo.
const Version = 4

// LockKey is the advisory lock (pg_advisory_xact_lock) that serialises every
// change Privata makes to a cluster's schema: install, plan/apply.
const LockKey int64 = 0x70726976617461 // "privata"

//go:embed *.sql
var files embed.FS

// Files returns the embedded files' names in the order they are applied.
func Files() []string {
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		panic(err)
	}
	sort.Strings(names)
	return names
}

// Hash identifies the embedded content.
func Hash() string {
	h := sha256.New()
	for _, n := range Files() {
		b, _ := files.ReadFile(n)
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Script returns the SQL that installs the embedded files, for `privata
// plan` to print.
func Script() string {
	var out string
	for _, n := range Files() {
		b, _ := files.ReadFile(n)
		out += "-- sql/" + n + "\n" + string(b) + "\n"
	}
	return out
}

// Installed reports whether the cluster behind tx holds exactly the embedded
// content, and returns the version found (0 when nothing is installed).
func Installed(ctx context.Context, tx pgx.Tx) (current bool, version int, err error) {
	var exists bool
	err = tx.QueryRow(ctx, `SELECT to_regclass('privata.version') IS NOT NULL`).Scan(&exists)
	if err != nil || !exists {
		return false, 0, err
	}
	var hash string
	err = tx.QueryRow(ctx, `SELECT version, hash FROM privata.version`).Scan(&version, &hash)
	if err == pgx.ErrNoRows {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("read privata.version: %w", err)
	}
	return hash == Hash(), version, nil
}

// Install applies the embedded files inside tx, which must hold the advisory
// lock LockKey. It does nothing when the content is already installed, and
// refuses a database installed by a newer version.
func Install(ctx context.Context, tx pgx.Tx) (changed bool, err error) {
	current, version, err := Installed(ctx, tx)
	if err != nil {
		return false, err
	}
	if current {
		return false, nil
	}
	if version > Version {
		return false, fmt.Errorf("the database holds Privata SQL version %d, newer than this binary's %d: "+
			"upgrade privata", version, Version)
	}
	for _, n := range Files() {
		b, _ := files.ReadFile(n)
		if _, err := tx.Exec(ctx, string(b)); err != nil {
			return false, fmt.Errorf("install sql/%s: %w", n, err)
		}
	}
	_, err = tx.Exec(ctx, `INSERT INTO privata.version (one, version, hash, installed_at)
		VALUES (true, $1, $2, now())
		ON CONFLICT (one) DO UPDATE SET version = $1, hash = $2, installed_at = now()`, Version, Hash())
	if err != nil {
		return false, fmt.Errorf("record privata.version: %w", err)
	}
	return true, nil
}
