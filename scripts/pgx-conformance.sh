#!/usr/bin/env bash
# Runs the pgx v5.13.0 test suite against PostgreSQL directly and through
# `privata serve`, and prints passed/failed/skipped for both.
#
# The suite is fetched into the Go module cache from a temporary module (our
# go.mod is not touched). A throwaway cluster is set up as pgx's CI does
# (database pgx_test, hstore, ltree, the uint64 domain). Privata runs with
# trust authentication and a policy role mapped to the superuser, so that
# the suite has the rights it has directly.
#
#   scripts/pgx-conformance.sh [go test flags, e.g. -run TestConnect]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PGX_VERSION=v5.13.0
work=$(mktemp -d /tmp/privata-pgx.XXXXXX)
chmod 755 "$work"
cleanup() {
  [ -n "${PRIVATA_PID:-}" ] && kill "$PRIVATA_PID" 2>/dev/null && wait "$PRIVATA_PID" 2>/dev/null
  stop_cluster "$work/data"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== fetching the pgx $PGX_VERSION test suite"
mkdir "$work/mod"
(cd "$work/mod" && go mod init conformance >/dev/null 2>&1 &&
  go get -t "github.com/jackc/pgx/v5/...@$PGX_VERSION" >/dev/null 2>&1)

echo "== building privata"
go build -o bin/privata ./cmd/controller

pg_port=$(free_port)
px_port=$(free_port)
start_cluster "$work/data" "$pg_port"
bin=$(pg_bindir)
psql_() { "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE pgx_test"
psql_ -d pgx_test -c "CREATE EXTENSION hstore" -c "CREATE EXTENSION ltree" \
  -c "CREATE DOMAIN uint64 AS numeric(20,0)"

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
    url: postgres://postgres@127.0.0.1:$pg_port/pgx_test?sslmode=disable
policies: [policy.yaml]
server:
  listen: 127.0.0.1:$px_port
  metrics_listen: ""
auth:
  method: trust
  default_role: admin
YAML
start_privata "$work/privata.yaml" "$work/privata.log" "$px_port"

# run LABEL URL: runs the suite with PGX_TEST_DATABASE=URL; prints counts.
run() {
  local label=$1 url=$2
  shift 2
  local out="$work/$label.json"
  (cd "$work/mod" && PGX_TEST_DATABASE="$url" go test -json -count=1 -p 1 \
    "$@" "github.com/jackc/pgx/v5/..." >"$out" 2>&1) || true
  local pass fail skip
  pass=$(grep -c '"Action":"pass","Package":"[^"]*","Test"' "$out" || true)
  fail=$(grep -c '"Action":"fail","Package":"[^"]*","Test"' "$out" || true)
  skip=$(grep -c '"Action":"skip","Package":"[^"]*","Test"' "$out" || true)
  printf '%-10s %6d passed %6d failed %6d skipped\n' "$label" "$pass" "$fail" "$skip"
  if [ "$fail" -gt 0 ]; then
    grep '"Action":"fail","Package":"[^"]*","Test"' "$out" |
      sed -E 's/.*"Package":"([^"]*)","Test":"([^"]*)".*/    failed: \1 \2/' | head -50
  fi
}

extra=("$@")
[ ${#extra[@]} -eq 0 ] && extra=(-timeout 30m)
echo "== pgx $PGX_VERSION suite (PostgreSQL $("$bin/postgres" --version | awk '{print $3}'))"
run direct "postgres://postgres@127.0.0.1:$pg_port/pgx_test?sslmode=disable" "${extra[@]}"
run privata "postgres://postgres@127.0.0.1:$px_port/pgx_test?sslmode=disable" "${extra[@]}"
