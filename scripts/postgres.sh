#!/usr/bin/env bash
# Start (once) a throwaway PostgreSQL server on loopback for the test suite and print its URL.
# Installs Debian's postgresql when run as root on a machine without it; otherwise says how.
# Idempotent: a server already answering on the port is reused. Trust auth, 127.0.0.1 only:
# a test server, never a place for real data. Usage: url="$(scripts/postgres.sh)"
set -euo pipefail
port="${BT_PG_PORT:-54329}"
dir="${BT_PG_DIR:-/tmp/bt-postgres-$(id -u)}"

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(bindir)" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    echo "error: the PostgreSQL tests need Debian's postgresql: sudo apt-get install postgresql" >&2
    exit 1
  fi
fi
bin="$(bindir)"
# initdb and the server refuse to run as root: as root they run as the postgres user.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" >/dev/null \
    || { tail -n 20 "$dir/server.log" >&2; exit 1; }
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
