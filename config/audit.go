package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Audit configures the audit trail (the audit: section).
type Audit struct {
	// URL, when set, is a separate audit database that holds every
	// cluster's audit records; by default each cluster holds its own in
	// the schema privata_audit.
	URL Env `yaml:"url"`
	// HMACKey, when set, keys the hash chains (HMAC-SHA256): whoever
	// lacks it cannot forge a chain. At least 16 bytes; take it from the
	// environment, ${PRIVATA_AUDIT_KEY}.
	HMACKey Env `yaml:"hmac_key"`
	// SpoolDir holds the read-audit spool of this instance, one
	// subdirectory per store.
	SpoolDir string `yaml:"spool_dir"`
	// Fsync is the spool's fsync policy: always, interval or never. Under
	// each a record is written before the statement runs; the policy
	// bounds what a crash of the machine may lose.
	Fsync         string   `yaml:"fsync"`
	FsyncInterval Duration `yaml:"fsync_interval"`
	// SpoolMaxMB bounds the records waiting for an unreachable store;
	// past it statements on classified columns are refused.
	SpoolMaxMB int `yaml:"spool_max_mb"`
	// FailOpen lets statements run when their audit record cannot be made
	// durable. Development only: Privata says so loudly in its log.
	FailOpen bool `yaml:"fail_open"`
	// Sink, when set, receives every audit record as a JSON line: "stdout"
	// or a file path.
	Sink string `yaml:"sink"`
	// Instance names this Privata instance's read chain; default a random
	// name kept in the spool.
	Instance string `yaml:"instance"`
	// Slot is the replication slot of the change consumers.
	Slot string `yaml:"slot"`
	// SlotWarnMB: a slot retaining more WAL than this is warned about.
	SlotWarnMB int `yaml:"slot_warn_mb"`
	// ServeConsumers makes `privata serve` run the change consumer of every
	// cluster (default true); turn it off where `privata audit consume`
	// runs them instead.
	ServeConsumers bool `yaml:"serve_consumers"`
}

func defaultAudit() Audit {
	return Audit{
		SpoolDir:       ".privata/audit-spool",
		Fsync:          "interval",
		FsyncInterval:  Duration(time.Second),
		SpoolMaxMB:     1024,
		Slot:           "privata_audit",
		SlotWarnMB:     1024,
		ServeConsumers: true,
	}
}

var auditSlot = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// anchor makes the audit section's relative paths relative to dir.
func (a *Audit) anchor(dir string) {
	if a.SpoolDir != "" && !filepath.IsAbs(a.SpoolDir) {
		a.SpoolDir = filepath.Join(dir, a.SpoolDir)
	}
	if a.Sink != "" && a.Sink != "stdout" && !filepath.IsAbs(a.Sink) {
		a.Sink = filepath.Join(dir, a.Sink)
	}
}

func (a *Audit) check() error {
	var errs []error
	if a.URL != "" && !strings.HasPrefix(string(a.URL), "postgres") {
		errs = append(errs, errors.New("audit: url is not a postgres:// URL"))
	}
	if k := len(a.HMACKey); k > 0 && k < 16 {
		errs = append(errs, fmt.Errorf("audit: hmac_key has %d bytes; use at least 16", k))
	}
	switch a.Fsync {
	case "always", "interval", "never":
	default:
		errs = append(errs, fmt.Errorf("audit: fsync %q: want always, interval or never", a.Fsync))
	}
	if a.FsyncInterval <= 0 {
		errs = append(errs, errors.New("audit: fsync_interval must be positive"))
	}
	if a.SpoolDir == "" {
		errs = append(errs, errors.New("audit: spool_dir is empty"))
	}
	if a.SpoolMaxMB <= 0 {
		errs = append(errs, errors.New("audit: spool_max_mb must be positive"))
	}
	if !auditSlot.MatchString(a.Slot) {
		errs = append(errs, fmt.Errorf("audit: slot %q: use lower-case letters, digits and "+
			"underscores", a.Slot))
	}
	if a.Instance != "" && strings.ContainsAny(a.Instance, "/ \t\n") {
		errs = append(errs, errors.New("audit: instance may not hold slashes or spaces"))
	}
	return errors.Join(errs...)
}
