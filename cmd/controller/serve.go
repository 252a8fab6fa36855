package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/privata/privata/config"
	"github.com/privata/privata/policy"
	"github.com/privata/privata/proxy"
)

func init() {
	commands = append(commands, func() *cobra.Command {
		var file string
		cmd := &cobra.Command{
			Use:   "serve",
			Short: "Serve PostgreSQL clients through Privata",
			Long: "Serve listens on server.listen for PostgreSQL clients and relays their sessions " +
				"to the configured clusters, every statement analysed first. Metrics are served " +
				"on server.metrics_listen at /metrics.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return serve(cmd.Context(), file)
			},
		}
		cmd.Flags().StringVarP(&file, "config", "c", "privata.yaml", "configuration file")
		return cmd
	})
}

func serve(ctx context.Context, file string) error {
	cfg, err := config.Load(file)
	if err != nil {
		return err
	}
	pol, err := policy.Load(cfg.Policies...)
	if err != nil {
		return err
	}
	return runServer(ctx, cfg, pol, nil)
}

// runServer runs the proxy and the controller loops (read audit, change
// consumers, cache invalidation, routing) until ctx ends. ready, when set,
// is called with the proxy's address once it accepts connections. serve
// and dev share it.
func runServer(ctx context.Context, cfg *config.Config, pol *policy.Policy,
	ready func(addr string)) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rp, err := startReadPath(ctx, cfg, pol, reg, slog.Default())
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rp.Close(closeCtx); err != nil {
			slog.Warn("read audit: records not yet shipped stay in the spool for the next "+
				"start", "err", err)
		}
	}()
	opts := proxy.Options{Registerer: reg, OnSessionEnd: logSession, Audit: rp.auditOption(),
		Cache: rp.cache}
	release, err := routing(ctx, cfg, pol, &opts)
	if err != nil {
		return err
	}
	defer release()
	srv, err := proxy.New(cfg, pol, opts)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.Server.MetricsListen != "" {
		ml, err := net.Listen("tcp", cfg.Server.MetricsListen)
		if err != nil {
			l.Close()
			return fmt.Errorf("metrics listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ml)
		defer hs.Close()
		slog.Info("metrics listening", "addr", ml.Addr().String())
	}
	slog.Info("privata serving", "addr", l.Addr().String(), "policy_roles", len(pol.Roles),
		"auth", cfg.Auth.Method)
	if ready != nil {
		ready(l.Addr().String())
	}
	err = srv.Serve(ctx, l)
	slog.Info("privata stopped")
	return err
}

// logSession logs a client session's end: who and how long, never SQL or
// data.
func logSession(info proxy.SessionInfo, err error) {
	attrs := []any{"remote", info.Remote, "user", info.User, "role", info.Role,
		"cluster", info.Cluster, "pid", info.PID, "duration", info.Duration.Round(time.Millisecond)}
	var pe *proxy.Error
	switch {
	case err == nil:
		slog.Debug("session ended", attrs...)
	case errors.As(err, &pe):
		slog.Info("session refused or ended", append(attrs, "sqlstate", pe.Code, "error",
			pe.Message)...)
	default:
		slog.Debug("session ended", append(attrs, "reason", err.Error())...)
	}
}
