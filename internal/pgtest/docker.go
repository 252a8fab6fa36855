package pgtest

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

// startDocker runs a cluster in a postgres:15 container. It is used only when
// PRIVATA_TEST_DOCKER is set, for machines that have Docker but not
// PostgreSQL's binaries.
func startDocker(name string, opts Options) (*Cluster, error) {
	password := opts.Password
	if password == "" {
		password = "postgres"
	}
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, fmt.Errorf("pgtest: docker: %w", err)
	}
	cmd := []string{"postgres", "-c", "wal_level=logical", "-c", "max_replication_slots=20",
		"-c", "max_wal_senders=20", "-c", "max_prepared_transactions=50"}
	all := withTestDefaults(opts.Settings)
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd = append(cmd, "-c", k+"="+all[k])
	}
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Name:       "",
		Repository: "postgres",
		Tag:        "15",
		Env:        []string{"POSTGRES_PASSWORD=" + password},
		Cmd:        cmd,
	}, func(hc *docker.HostConfig) {
		hc.AutoRemove = true
		hc.RestartPolicy = docker.RestartPolicy{Name: "no"}
	})
	if err != nil {
		return nil, fmt.Errorf("pgtest: docker run postgres:15 for %q: %w", name, err)
	}
	res.Expire(3600)
	port, _ := strconv.Atoi(res.GetPort("5432/tcp"))
	c := &Cluster{Name: name, host: "127.0.0.1", port: port, password: password,
		stop: func() error { return pool.Purge(res) }}
	pool.MaxWait = 2 * time.Minute
	err = pool.Retry(func() error {
		conn, err := pgx.Connect(context.Background(), c.URL("postgres"))
		if err != nil {
			return err
		}
		return conn.Close(context.Background())
	})
	if err != nil {
		pool.Purge(res)
		return nil, fmt.Errorf("pgtest: postgres container for %q never accepted connections: %w", name, err)
	}
	return c, nil
}
