#!/usr/bin/env bash
# Benchmarks `privata serve` against PostgreSQL directly and PgBouncer
# (Debian's package, session pooling so that each client has its own server
# connection, as through Privata), all in the same run on the same cluster.
#
# For pgbench select-only and tpcb-like, with -M simple, extended and
# prepared, at 1 and 8 clients, it prints TPS and p50/p99 latency (from
# pgbench's per-transaction log) and each one's ratio to direct. It prints;
# it asserts nothing.
#
#   scripts/bench-proxy.sh            # BENCH_SECONDS=10 per run, BENCH_SCALE=10
#   BENCH_SCRIPTS=select-only BENCH_MODES=prepared BENCH_CLIENTS=8 scripts/bench-proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
SCALE=${BENCH_SCALE:-10}
bin=$(pg_bindir)

if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "pgbouncer is not installed and we are not root to apt-get it" >&2
    exit 1
  fi
  echo "== installing pgbouncer (Debian package)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
  # The package starts a service of its own; this script runs its own.
  service pgbouncer stop >/dev/null 2>&1 || true
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

work=$(mktemp -d /tmp/privata-bench.XXXXXX)
chmod 755 "$work"
cleanup() {
  [ -n "${PRIVATA_PID:-}" ] && kill "$PRIVATA_PID" 2>/dev/null && wait "$PRIVATA_PID" 2>/dev/null
  [ -f "$work/bouncer/pgbouncer.pid" ] && kill "$(cat "$work/bouncer/pgbouncer.pid")" 2>/dev/null
  sleep 0.2
  stop_cluster "$work/data"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building privata"
go build -o bin/privata ./cmd/controller

pg_port=$(free_port)
px_port=$(free_port)
pb_port=$(free_port)
start_cluster "$work/data" "$pg_port"
"$bin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE bench"
echo "== pgbench -i -s $SCALE"
"$bin/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$pg_port" -U postgres bench 2>/dev/null

cat >"$work/policy.yaml" <<YAML
version: 1
regions:
  main: {cluster: main}
roles:
  admin: {pg_role: postgres, identity: full, clinical: full}
YAML
cat >"$work/privata.yaml" <<YAML
clusters:
  main:
    url: postgres://postgres@127.0.0.1:$pg_port/bench?sslmode=disable
policies: [policy.yaml]
server:
  listen: 127.0.0.1:$px_port
  metrics_listen: ""
auth:
  method: trust
  default_role: admin
YAML
start_privata "$work/privata.yaml" "$work/privata.log" "$px_port"

mkdir -p "$work/bouncer"
cat >"$work/bouncer/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pb_port
unix_socket_dir =
auth_type = trust
auth_file = $work/bouncer/users.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = $work/bouncer/pgbouncer.log
pidfile = $work/bouncer/pgbouncer.pid
INI
echo '"postgres" ""' >"$work/bouncer/users.txt"
[ "$(id -u)" -eq 0 ] && chown -R postgres "$work/bouncer"
# -d: pgbouncer daemonizes and writes its pidfile; cleanup kills it by that.
as_pg "$PGBOUNCER" -d "$work/bouncer/pgbouncer.ini" >/dev/null 2>&1
for _ in $(seq 1 100); do
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$pb_port" && break
  sleep 0.1
done

# measure TARGET PORT SCRIPT MODE CLIENTS: prints "tps p50_ms p99_ms".
measure() {
  local dir="$work/log-$1-$3-$4-$5"
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  local out
  out=$(cd "$dir" && as_pg "$bin/pgbench" -n -h 127.0.0.1 -p "$2" -U postgres \
    -b "$3" -M "$4" -c "$5" -j "$(($5 < 2 ? 1 : 2))" -T "$SECONDS_PER_RUN" -l bench 2>&1)
  local tps
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | tail -1)
  # Per-transaction log: client, transaction, latency in microseconds, ...
  cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n >"$dir/lat"
  local n p50 p99
  n=$(wc -l <"$dir/lat")
  p50=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.3f", $1 / 1000; exit}' "$dir/lat")
  p99=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.3f", $1 / 1000; exit}' "$dir/lat")
  echo "${tps:-0} ${p50:-0} ${p99:-0}"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo "== $SECONDS_PER_RUN s per run, scale $SCALE, $(nproc) cores; latency in ms"
printf '%-12s %-8s %3s | %9s %7s %7s | %9s %7s %7s %5s | %9s %7s %7s %5s\n' \
  script mode cli "direct" p50 p99 "privata" p50 p99 ratio "pgbouncer" p50 p99 ratio
for script in ${BENCH_SCRIPTS:-select-only tpcb-like}; do
  for mode in ${BENCH_MODES:-simple extended prepared}; do
    for clients in ${BENCH_CLIENTS:-1 8}; do
      read -r dt d50 d99 < <(measure direct "$pg_port" "$script" "$mode" "$clients")
      read -r pt p50 p99 < <(measure privata "$px_port" "$script" "$mode" "$clients")
      read -r bt b50 b99 < <(measure pgbouncer "$pb_port" "$script" "$mode" "$clients")
      printf '%-12s %-8s %3d | %9.0f %7s %7s | %9.0f %7s %7s %5s | %9.0f %7s %7s %5s\n' \
        "$script" "$mode" "$clients" "$dt" "$d50" "$d99" "$pt" "$p50" "$p99" "$(ratio "$pt" "$dt")" \
        "$bt" "$b50" "$b99" "$(ratio "$bt" "$dt")"
    done
  done
done
