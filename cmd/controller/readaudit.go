package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/config"
)

// readAudit is the read-audit write path the proxy calls: a Writer per
// audit store, each with its own spool under audit.spool_dir.
type readAudit struct {
	writers  map[string]*audit.Writer // by store name
	stores   []*audit.Store
	sink     *audit.Sink
	separate bool
}

// openReadAudit opens the Writers of every audit store. With
// audit.fail_open it says loudly, now and for every record it loses, that
// reads may go unaudited.
func openReadAudit(ctx context.Context, cfg *config.Config, log *slog.Logger) (*readAudit,
	error) {
	stores, err := openStores(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sink, err := openSink(cfg)
	if err != nil {
		closeStores(stores)
		return nil, err
	}
	a := &readAudit{writers: map[string]*audit.Writer{}, stores: stores, sink: sink,
		separate: cfg.Audit.URL != ""}
	if cfg.Audit.FailOpen {
		log.Warn("AUDIT FAIL-OPEN: audit.fail_open is set, statements run even when their " +
			"read audit record cannot be written. Development only: never in production.")
	}
	for _, s := range stores {
		store := s.Name
		w, err := audit.OpenWriter(ctx, s, audit.WriterOptions{
			Dir:           filepath.Join(cfg.Audit.SpoolDir, store),
			Instance:      cfg.Audit.Instance,
			Key:           []byte(cfg.Audit.HMACKey),
			Fsync:         audit.FsyncPolicy(cfg.Audit.Fsync),
			FsyncInterval: cfg.Audit.FsyncInterval.D(),
			MaxBytes:      int64(cfg.Audit.SpoolMaxMB) << 20,
			Sink:          sink,
			FailOpen:      cfg.Audit.FailOpen,
			OnDrop: func(err error) {
				log.Error("AUDIT FAIL-OPEN: a read audit record was lost", "store", store,
					"err", err)
			},
			OnShipError: func(err error) {
				log.Warn("audit store unreachable; read records wait in the spool",
					"store", store, "err", err)
			},
		})
		if err != nil {
			a.Close(ctx)
			return nil, err
		}
		a.writers[store] = w
	}
	return a, nil
}

// For returns the Writer for statements that ran on cluster.
func (a *readAudit) For(cluster string) *audit.Writer {
	if a.separate {
		return a.writers["audit"]
	}
	return a.writers[cluster]
}

// Close ships what it can within ctx and closes everything.
func (a *readAudit) Close(ctx context.Context) error {
	var errs []error
	for _, w := range a.writers {
		errs = append(errs, w.Close(ctx))
	}
	closeStores(a.stores)
	errs = append(errs, a.sink.Close())
	return errors.Join(errs...)
}
