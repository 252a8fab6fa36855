# Helpers shared by the scripts: a throwaway PostgreSQL cluster from the
# local binaries, and `privata serve` in front of it. Source this file.
# As root, server programs run as the postgres OS user (initdb refuses root).

pg_bindir() {
  if [ -n "${PRIVATA_PG_BINDIR:-}" ]; then echo "$PRIVATA_PG_BINDIR"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -n "$d" ]; then echo "$d"; return; fi
  dirname "$(command -v initdb)"
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_cluster DIR PORT [extra postgresql.conf lines...]
start_cluster() {
  local dir=$1 port=$2 bin
  shift 2
  bin=$(pg_bindir)
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "max_connections = 300"
    echo "shared_buffers = 256MB"
    echo "fsync = off"
    echo "synchronous_commit = off"
    echo "full_page_writes = off"
    for line in "$@"; do echo "$line"; done
  } >>"$dir/postgresql.conf"
  as_pg "$bin/pg_ctl" start -w -D "$dir" -l "$dir/server.log" >/dev/null
}

stop_cluster() {
  as_pg "$(pg_bindir)/pg_ctl" stop -m fast -w -D "$1" >/dev/null 2>&1 || true
}

# start_privata CONFIG LOG PORT: runs bin/privata serve in the background
# and waits until it accepts connections; sets PRIVATA_PID.
start_privata() {
  ./bin/privata serve -c "$1" >"$2" 2>&1 &
  PRIVATA_PID=$!
  for _ in $(seq 1 100); do
    if "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$3"; then return 0; fi
    sleep 0.1
  done
  echo "privata serve did not start; its log:" >&2
  cat "$2" >&2
  return 1
}
