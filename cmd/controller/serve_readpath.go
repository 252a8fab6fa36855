package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/cache"
	"github.com/privata/privata/config"
	"github.com/privata/privata/logical"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/proxy"
	"github.com/privata/privata/storage"
)

// readPath is what serve runs beside the proxy: the read-audit writers,
// the change consumers of every cluster, the cache and its invalidator.
type readPath struct {
	audit     *readAudit
	cache     *cache.Cache
	consumers *changeConsumers
	stop      context.CancelFunc
	done      chan struct{}
}

// startReadPath opens the read audit and the cache, and starts the change
// consumers (unless audit.serve_consumers is off) with the cache's
// invalidator following each of them.
func startReadPath(ctx context.Context, cfg *config.Config, pol *policy.Policy,
	reg prometheus.Registerer, log *slog.Logger) (*readPath, error) {
	for _, c := range append(audit.Collectors(), logical.Collectors()...) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	if len(pol.Tables) == 0 {
		log.Info("the policy classifies no table: no read audit, change consumers or cache")
		done := make(chan struct{})
		close(done)
		return &readPath{audit: &readAudit{}, stop: func() {}, done: done}, nil
	}
	ra, err := openReadAudit(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	c, err := cache.Open(&cfg.Cache, cache.NewMetrics(reg))
	if err != nil {
		ra.Close(ctx)
		return nil, err
	}
	rp := &readPath{audit: ra, cache: c, done: make(chan struct{})}
	runCtx, stop := context.WithCancel(context.Background())
	rp.stop = stop
	if !cfg.Audit.ServeConsumers {
		close(rp.done)
		if c != nil {
			log.Warn("audit.serve_consumers is off: this instance's cache hears of changes " +
				"made directly in PostgreSQL only if another instance shares its backend " +
				"and runs the consumers")
		}
		return rp, nil
	}
	rp.consumers, err = startChangeConsumers(runCtx, cfg, log)
	if err != nil {
		stop()
		c.Close()
		ra.Close(ctx)
		return nil, err
	}
	inv := cache.NewInvalidator(c)
	for name, consumer := range rp.consumers.byCluster {
		s := &changeStream{consumer: consumer, pol: pol, cache: c}
		rp.consumers.wg.Go(func() {
			inv.Run(runCtx, s, func(err error) {
				log.Warn("cache invalidation failed; the cache serves nothing until a flush "+
					"succeeds", "cluster", name, "err", err)
			})
		})
	}
	go func() {
		rp.consumers.wait()
		close(rp.done)
	}()
	if c != nil {
		log.Info("read cache on", "backend", cfg.Cache.Backend)
	}
	return rp, nil
}

// auditOption is the proxy's source of read-audit writers; nil when
// nothing is audited.
func (rp *readPath) auditOption() func(cluster string) proxy.ReadAuditor {
	if len(rp.audit.writers) == 0 {
		return nil
	}
	return func(cluster string) proxy.ReadAuditor {
		if w := rp.audit.For(cluster); w != nil {
			return w
		}
		return nil
	}
}

// Close stops the consumers and ships what the read audit can within ctx.
func (rp *readPath) Close(ctx context.Context) error {
	rp.stop()
	select {
	case <-rp.done:
	case <-ctx.Done():
	}
	return errors.Join(rp.audit.Close(ctx), rp.cache.Close())
}

// changeStream is a cluster's change consumer as the cache invalidator
// sees it: base tables are named as the application names them (the
// proxy's dependencies), and the deletion of a subject's identity row
// (an erasure) removes every entry of that subject at once.
type changeStream struct {
	consumer *logical.Consumer
	pol      *policy.Policy
	cache    *cache.Cache
}

// Subscribe implements cache.Stream.
func (s *changeStream) Subscribe(ctx context.Context,
	fn func(context.Context, []cache.Change) error) error {
	return s.consumer.Subscribe(ctx, func(ctx context.Context, events []logical.Event) error {
		changes := make([]cache.Change, 0, len(events))
		var erased []string
		for _, e := range events {
			t, identity := appTable(s.pol, e.Table)
			if t == nil {
				continue
			}
			ch := cache.Change{Table: t.QualifiedName(), Op: cache.Op(e.Op), LSN: uint64(e.LSN),
				Commit: e.CommitTime}
			if !e.Subject.IsZero() {
				ch.Subject = e.Subject.String()
				if identity && e.Op == audit.Delete {
					erased = append(erased, ch.Subject)
				}
			}
			changes = append(changes, ch)
		}
		if err := fn(ctx, changes); err != nil {
			return err
		}
		for _, subject := range erased {
			ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
			s.cache.Erase(ectx, subject)
			cancel()
		}
		return nil
	})
}

// appTable returns the policy table a base table (schema.name) belongs to,
// and whether it is the table's identity side.
func appTable(p *policy.Policy, base string) (*policy.Table, bool) {
	schema, name, ok := strings.Cut(base, ".")
	if !ok || schema != storage.IdentitySchema && schema != storage.ClinicalSchema {
		return nil, false
	}
	for _, t := range p.Tables {
		if t.Name == name {
			return t, schema == storage.IdentitySchema
		}
	}
	return nil, false
}
