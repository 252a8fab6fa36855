package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/privata/privata/config"
	"github.com/privata/privata/fdw"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/proxy"
	"github.com/privata/privata/regions"
	"github.com/privata/privata/storage"
)

// routing wires regions into the proxy's options when the configuration
// has several clusters: the router, two-phase commit with its recovery
// (at start, then every server.two_phase_recovery_after), and the log of
// transfers. The
// returned function releases what it opened.
func routing(ctx context.Context, cfg *config.Config, pol *policy.Policy,
	opts *proxy.Options) (func(), error) {
	targets, err := storage.Targets(cfg, pol)
	if err != nil {
		return nil, err
	}
	// DDL on classified tables through the proxy splits new tables in
	// each cluster's storage.
	opts.Targets = targets
	if len(targets) < 2 {
		return func() {}, nil
	}
	topo, err := fdw.NewTopology(cfg, pol, targets)
	if err != nil {
		return nil, err
	}
	pools := regions.NewPools(topo)
	opts.Router = &regions.Router{Policy: pol, Topo: topo, Pools: pools, TwoPhase: cfg.Server.TwoPhaseCommit,
		Dir: regions.NewDirectory(pools, topo, cfg.Server.DirectoryEntries, cfg.Server.DirectoryTTL.D())}
	opts.OnTransfer = func(t proxy.Transfer) {
		slog.Info("transfer", "user", t.User, "role", t.Role, "purpose", t.Purpose, "region", t.Region,
			"from", t.From, "transfers", t.Transfers, "tables", t.Tables, "via", t.Via)
	}
	stop := make(chan struct{})
	if cfg.Server.TwoPhaseCommit {
		tp := &regions.TwoPhase{Pools: pools}
		opts.TwoPhase = tp
		age := cfg.Server.TwoPhaseRecoveryAfter.D()
		recoverOnce := func() {
			rec, err := tp.Recover(ctx, age)
			if err != nil {
				slog.Warn("two-phase recovery", "error", err)
				return
			}
			if rec.Committed+rec.RolledBack > 0 || len(rec.Unreachable) > 0 {
				slog.Info("two-phase recovery", "committed", rec.Committed, "rolled_back", rec.RolledBack,
					"unreachable", rec.Unreachable)
			}
		}
		recoverOnce()
		go func() {
			t := time.NewTicker(age)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					recoverOnce()
				case <-stop:
					return
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	slog.Info("routing between regions", "region", cfg.Server.Region, "clusters", len(targets),
		"two_phase_commit", cfg.Server.TwoPhaseCommit)
	return func() {
		close(stop)
		pools.Close()
	}, nil
}
