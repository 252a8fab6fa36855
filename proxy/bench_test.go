package proxy

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// BenchmarkRelay runs the same prepared point query from 8 connections
// directly and through Privata, in the same run, and reports Privata's
// throughput as a ratio of direct (ratio_to_direct; the goal is >= 0.85).
func BenchmarkRelay(b *testing.B) {
	e := newEnv(b, envOptions{})
	ctx := context.Background()
	e.db.Exec(b, "CREATE TABLE accounts (aid int PRIMARY KEY, abalance int); "+
		"INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100000) g; "+
		"GRANT SELECT ON accounts TO clinician")
	const clients = 8
	run := func(url string, n int) time.Duration {
		conns := make([]*pgx.Conn, clients)
		for i := range conns {
			conns[i] = connectOrFail(b, url)
		}
		start := time.Now()
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var v int
				for j := i; j < n; j += clients {
					if err := c.QueryRow(ctx, "SELECT abalance FROM accounts WHERE aid = $1",
						j%100000+1).Scan(&v); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		for _, c := range conns {
			c.Close(ctx)
		}
		return d
	}
	n := max(b.N, 20000)
	b.ResetTimer()
	direct := run(e.db.URL(), n)
	through := run(e.url("clinician"), n)
	b.StopTimer()
	b.ReportMetric(float64(n)/direct.Seconds(), "direct_qps")
	b.ReportMetric(float64(n)/through.Seconds(), "privata_qps")
	b.ReportMetric(direct.Seconds()/through.Seconds(), "ratio_to_direct")
}

func connectOrFail(b *testing.B, url string) *pgx.Conn {
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		b.Fatal(fmt.Errorf("connect: %w", err))
	}
	return c
}

// BenchmarkClientSide measures Privata's own work on the client side per
// pgbench transaction (select-only), without network or PostgreSQL: the
// messages are read from memory and forwarded to nowhere.
func BenchmarkClientSide(b *testing.B) {
	const perRun = 100
	for _, tc := range []struct {
		name string
		msgs func(i int) []byte
	}{
		{"simple", func(i int) []byte {
			return encode(&pgproto3.Query{String: fmt.Sprintf(
				"SELECT abalance FROM pgbench_accounts WHERE aid = %d;", i*7919%100000)})
		}},
		{"extended", func(i int) []byte {
			return encode(&pgproto3.Parse{Query: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"},
				&pgproto3.Bind{Parameters: [][]byte{[]byte(fmt.Sprint(i))}},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
		}},
		{"prepared", func(i int) []byte {
			return encode(&pgproto3.Bind{PreparedStatement: "P0_1", Parameters: [][]byte{[]byte(fmt.Sprint(i))}},
				&pgproto3.Execute{}, &pgproto3.Sync{})
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var data []byte
			data = append(data, encode(&pgproto3.Parse{Name: "P0_1",
				Query: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"})...)
			for i := 0; i < perRun; i++ {
				data = append(data, tc.msgs(i)...)
			}
			s := offlineSession(nil)
			b.ReportAllocs()
			b.ResetTimer()
			s.q.ring = make([]entry, 1024)
			src := bytes.NewReader(data)
			s.cr = newReader(src, 1<<20)
			for i := 0; i < b.N; i++ {
				src.Reset(data)
				s.cr.br.Reset(src)
				if err := s.front(); err == nil {
					b.Fatal("front ended without the end of its input")
				}
				for s.q.pending() {
					s.q.pop()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perRun), "ns/transaction")
		})
	}
}
