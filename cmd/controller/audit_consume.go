package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/privata/privata/audit"
	"github.com/privata/privata/config"
	"github.com/privata/privata/logical"
)

func auditConsumeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consume",
		Short: "Run the change consumer of every cluster until interrupted",
		Long: "consume streams every committed change of the split tables of every cluster " +
			"into the audit store. `privata serve` runs the same consumers; run this where " +
			"the proxy does not.",
		Args: cobra.NoArgs,
	}
	configFlag(cmd)
	metrics := cmd.Flags().String("metrics-listen", "",
		"serve Prometheus metrics on this address (default: none)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		if *metrics != "" {
			if err := serveMetrics(ctx, *metrics); err != nil {
				return err
			}
		}
		return runChangeConsumers(ctx, cfg, slog.Default())
	}
	return cmd
}

// serveMetrics serves the audit and consumer metrics until ctx ends.
func serveMetrics(ctx context.Context, addr string) error {
	reg := prometheus.NewRegistry()
	for _, c := range append(audit.Collectors(), logical.Collectors()...) {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics server stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}

// runChangeConsumers runs a change consumer per cluster until ctx ends,
// restarting each after an error. It returns when all have stopped.
func runChangeConsumers(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	cs, err := startChangeConsumers(ctx, cfg, log)
	if err != nil {
		return err
	}
	cs.wait()
	return nil
}

// changeConsumers are the running change consumers of every cluster, by
// cluster name.
type changeConsumers struct {
	byCluster map[string]*logical.Consumer
	wg        sync.WaitGroup
	done      func()
}

// wait returns when every consumer has stopped (after ctx ended).
func (cs *changeConsumers) wait() {
	cs.wg.Wait()
	cs.done()
}

// startChangeConsumers starts a change consumer per cluster, each
// restarted after an error, until ctx ends.
func startChangeConsumers(ctx context.Context, cfg *config.Config,
	log *slog.Logger) (*changeConsumers, error) {
	stores, err := openStores(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sink, err := openSink(cfg)
	if err != nil {
		closeStores(stores)
		return nil, err
	}
	cs := &changeConsumers{byCluster: map[string]*logical.Consumer{}}
	cs.done = func() {
		closeStores(stores)
		sink.Close()
		log.Info("change consumers stopped")
	}
	var consumers []*logical.Consumer
	for _, name := range cfg.ClusterNames() {
		store := stores[0]
		if cfg.Audit.URL == "" {
			store = storeNamed(stores, name)
		}
		c, err := logical.New(logical.Options{
			Cluster: name, URL: string(cfg.Clusters[name].URL), Store: store,
			Key: []byte(cfg.Audit.HMACKey), Sink: sink, Slot: cfg.Audit.Slot,
			SlotWarnBytes: int64(cfg.Audit.SlotWarnMB) << 20,
			OnSlotWarning: func(st logical.SlotStatus) {
				log.Warn(st.Advice(), "cluster", st.Cluster, "slot", st.Slot,
					"retained_mb", st.Retained>>20)
			},
		})
		if err != nil {
			cs.done()
			return nil, err
		}
		cs.byCluster[name] = c
		consumers = append(consumers, c)
	}
	for _, name := range cfg.ClusterNames() {
		c := cs.byCluster[name]
		cs.wg.Go(func() { superviseConsumer(ctx, c, name, log) })
	}
	log.Info("change consumers started", "clusters", len(consumers), "slot", cfg.Audit.Slot)
	return cs, nil
}

// superviseConsumer restarts a consumer after errors, backing off.
func superviseConsumer(ctx context.Context, c *logical.Consumer, cluster string, log *slog.Logger) {
	backoff := time.Second
	for ctx.Err() == nil {
		started := time.Now()
		err := c.Run(ctx)
		if err == nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		log.Error("change consumer failed; restarting", "cluster", cluster, "err", err,
			"retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
}
