// Package localpg runs PostgreSQL clusters from the binaries installed on this
// machine: initdb to create a data directory, pg_ctl to start and stop it.
//
// Both `privata dev` and the test harness use it. A cluster listens on
// 127.0.0.1 and on a Unix socket inside its data directory, with
// wal_level=logical so that the audit consumer and the cache invalidator can
// stream changes from it.
//
// PostgreSQL refuses to run as root. When the current user is root, every
// command runs as the `postgres` OS user and the data directory is handed to
// that user.
package localpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoBinaries is returned when initdb, pg_ctl or postgres cannot be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: " +
	"install them (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15) " +
	"or set PRIVATA_PG_BINDIR to the directory that holds them")

// Options describe a cluster to create or start.
type Options struct {
	// Dir is the data directory. It is created by initdb when it is empty.
	Dir string
	// Port to listen on; 0 picks a free one.
	Port int
	// Settings are extra postgresql.conf lines, name to value.
	Settings map[string]string
	// Password, when set, is the superuser's password, and TCP connections
	// must authenticate with SCRAM-SHA-256. Otherwise they are trusted.
	Password string
	// Log is the server log file; default Dir/../<base>.log.
	Log string
}

// Cluster is a running local PostgreSQL cluster.
type Cluster struct {
	Dir  string
	Port int
	User string // superuser name

	password string
	log      string
	bin      string
	runAs    *user.User
}

// BinDir finds the directory holding PostgreSQL's server binaries.
func BinDir() (string, error) {
	if d := os.Getenv("PRIVATA_PG_BINDIR"); d != "" {
		if isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
		return "", fmt.Errorf("PRIVATA_PG_BINDIR=%s: no initdb there: %w", d, ErrNoBinaries)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "pg_ctl")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	// Debian installs server binaries outside PATH.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start initialises opts.Dir if it holds no cluster yet, then starts the
// server and waits until it accepts connections.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: opts.Dir, Port: opts.Port, User: "postgres", password: opts.Password, bin: bin}
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return nil, err
	}
	c.log = opts.Log
	if c.log == "" {
		c.log = c.Dir + ".log"
	}
	if os.Geteuid() == 0 {
		if c.runAs, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL needs the postgres OS user: %w", err)
		}
	}
	if err := c.checkReachable(); err != nil {
		return nil, err
	}
	if c.Port == 0 {
		if c.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.writeConf(opts.Settings); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Attach returns a handle on the cluster in dir without starting it, to stop
// or inspect a cluster that another process started.
func Attach(dir string) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, User: "postgres", bin: bin, log: dir + ".log"}
	if os.Geteuid() == 0 {
		if c.runAs, err = user.Lookup("postgres"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	if err := c.chown(c.Dir); err != nil {
		return err
	}
	args := []string{"-D", c.Dir, "-U", c.User, "--encoding=UTF8", "--locale=C.UTF-8",
		"--auth-local=trust", "--auth-host=trust"}
	if c.password != "" {
		pw := filepath.Join(filepath.Dir(c.Dir), "."+filepath.Base(c.Dir)+".pw")
		if err := os.WriteFile(pw, []byte(c.password+"\n"), 0o600); err != nil {
			return err
		}
		defer os.Remove(pw)
		if err := c.chown(pw); err != nil {
			return err
		}
		args = append(args, "--pwfile="+pw, "--auth-host=scram-sha-256")
	}
	out, err := c.command(ctx, "initdb", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", c.Dir, err, out)
	}
	return nil
}

// writeConf writes the settings Privata relies on into postgresql.auto.conf's
// neighbour, privata.conf, included from postgresql.conf.
func (c *Cluster) writeConf(extra map[string]string) error {
	settings := map[string]string{
		"listen_addresses":          "'127.0.0.1'",
		"port":                      strconv.Itoa(c.Port),
		"unix_socket_directories":   "'" + c.Dir + "'",
		"wal_level":                 "logical",
		"max_wal_senders":           "20",
		"max_replication_slots":     "20",
		"max_prepared_transactions": "50",
		"max_connections":           "200",
		"shared_buffers":            "128MB",
		"password_encryption":       "'scram-sha-256'",
		"logging_collector":         "off",
		// An error's message (invalid input syntax for a value), its
		// DETAIL and CONTEXT (a duplicate key, a COPY line) and the failed
		// statement's text would put patients' values in the server log:
		// it keeps FATAL and PANIC only, tersely.
		"log_min_messages":        "fatal",
		"log_min_error_statement": "panic",
		"log_error_verbosity":     "terse",
	}
	for k, v := range extra {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# written by privata; regenerated at every start\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, settings[k])
	}
	conf := filepath.Join(c.Dir, "privata.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if err := c.chown(conf); err != nil {
		return err
	}
	main := filepath.Join(c.Dir, "postgresql.conf")
	body, err := os.ReadFile(main)
	if err != nil {
		return err
	}
	if !strings.Contains(string(body), "include_if_exists = 'privata.conf'") {
		body = append(body, []byte("\ninclude_if_exists = 'privata.conf'\n")...)
		if err := os.WriteFile(main, body, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) start(ctx context.Context) error {
	if err := touch(c.log); err != nil {
		return err
	}
	if err := c.chown(c.log); err != nil {
		return err
	}
	cmd := c.command(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", c.Dir, "-l", c.log)
	// pg_ctl leaves the postmaster running after it returns; keep it out of
	// our process group so that a Ctrl-C meant for us reaches us first and we
	// stop the cluster cleanly.
	cmd.SysProcAttr.Setpgid = true
	if out, err := cmd.CombinedOutput(); err != nil {
		tail, _ := tailFile(c.log, 20)
		return fmt.Errorf("start cluster %s on port %d: %w\n%s%s", c.Dir, c.Port, err, out, tail)
	}
	return nil
}

// Stop shuts the cluster down (fast mode: sessions are disconnected, the
// server checkpoints).
func (c *Cluster) Stop() error { return c.stop("fast") }

// Kill stops the cluster the way a crash would (immediate mode: no
// checkpoint; the next start runs recovery).
func (c *Cluster) Kill() error { return c.stop("immediate") }

func (c *Cluster) stop(mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.command(ctx, "pg_ctl", "stop", "-w", "-m", mode, "-D", c.Dir).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Is server running?") {
		return fmt.Errorf("stop cluster %s: %w\n%s", c.Dir, err, out)
	}
	return nil
}

// Restart starts a stopped cluster again on the same port.
func (c *Cluster) Restart(ctx context.Context) error { return c.start(ctx) }

// Running reports whether the postmaster of this data directory is alive.
func (c *Cluster) Running() bool {
	return c.command(context.Background(), "pg_ctl", "status", "-D", c.Dir).Run() == nil
}

// Remove stops the cluster if it runs and deletes its data directory and log.
func (c *Cluster) Remove() error {
	err := c.Kill()
	if rmErr := os.RemoveAll(c.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	os.Remove(c.log)
	return err
}

// URL is a connection URL for database db as the superuser over TCP.
func (c *Cluster) URL(db string) string {
	auth := c.User
	if c.password != "" {
		auth += ":" + c.password
	}
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", auth, c.Port, db)
}

// LogTail returns the last n lines of the server log, for error messages.
func (c *Cluster) LogTail(n int) string {
	s, _ := tailFile(c.log, n)
	return s
}

// Bin returns the path of a PostgreSQL program (pg_dump, psql, ...) of the
// same installation as the server, falling back to PATH.
func (c *Cluster) Bin(name string) string {
	if p := filepath.Join(c.bin, name); isExec(p) {
		return p
	}
	return name
}

func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if c.runAs != nil {
		uid, _ := strconv.Atoi(c.runAs.Uid)
		gid, _ := strconv.Atoi(c.runAs.Gid)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		cmd.Env = append(cmd.Env, "HOME="+c.runAs.HomeDir, "USER=postgres")
		cmd.Dir = "/"
	}
	return cmd
}

// chown hands path to the postgres OS user when running as root.
func (c *Cluster) chown(path string) error {
	if c.runAs == nil {
		return nil
	}
	uid, _ := strconv.Atoi(c.runAs.Uid)
	gid, _ := strconv.Atoi(c.runAs.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return err
	}
	return nil
}

// checkReachable fails when the postgres OS user could not enter one of the
// directories above the data directory; we do not loosen permissions of
// directories we did not create.
func (c *Cluster) checkReachable() error {
	if c.runAs == nil {
		return nil
	}
	for dir := filepath.Dir(c.Dir); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("data directory %s: the postgres OS user cannot enter %s (mode %v); "+
				"choose a data directory outside it", c.Dir, dir, st.Mode().Perm())
		}
	}
	return nil
}

// FreePort asks the kernel for a TCP port on 127.0.0.1 that nothing listens on.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func touch(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

func tailFile(path string, n int) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n", nil
}
