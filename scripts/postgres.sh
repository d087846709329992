#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, on 127.0.0.1 only, never a place for real data.
#   url="$(scripts/postgres.sh)"   start it (once; a running one is reused) and print its URL
#   scripts/postgres.sh status     exit 0 when it answers
#   scripts/postgres.sh stop       stop it (its data folder stays, and keeps its password)
# The superuser `postgres` has a random password, made at the first initdb and kept in
# $BT_PG_DIR/bt-password (mode 0600): the URL carries it, so pass it on in the environment
# (BT_TEST_POSTGRES_URL), never on a command line, where any local user could read it.
# Installs Debian's postgresql when run as root on a machine without it; otherwise says how.
set -euo pipefail
# Not the port and folder of the trust-auth server an older version made (54329, /tmp/bt-postgres-UID),
# which a machine may still hold: this script refuses to reuse such a server, so it never meets one.
port="${BT_PG_PORT:-54331}"
dir="${BT_PG_DIR:-/tmp/bt-test-postgres-$(id -u)}"
password_file="$dir/bt-password"

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
answers() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; }

case "${1:-start}" in
  status) answers; exit ;;
  stop)
    if [ -f "$dir/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null; then
      as_owner "$bin/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
    fi
    exit 0 ;;
  start) ;;
  *) echo "error: unknown mode '$1'; use start (the default), status or stop" >&2; exit 2 ;;
esac

umask 077
if ! answers; then
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    # initdb needs an empty folder, so the password goes to it through a private file outside.
    password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    pwfile="$(mktemp)"
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$password" >"$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
    as_owner "$bin/initdb" -D "$dir" -U postgres --auth=scram-sha-256 --pwfile="$pwfile" -E UTF8 >/dev/null
    printf '%s\n' "$password" >"$password_file"
  fi
  if [ ! -f "$password_file" ]; then
    echo "error: $dir has no bt-password (an older scripts/postgres.sh made it with trust auth); remove it: rm -rf $dir" >&2
    exit 1
  fi
  as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" >/dev/null \
    || { tail -n 20 "$dir/server.log" >&2; exit 1; }
fi
if [ ! -f "$password_file" ]; then
  echo "error: a server answers on 127.0.0.1:$port, but $password_file is missing: it is not this script's" \
       "server (or an older trust-auth one); stop it, or set BT_PG_PORT and BT_PG_DIR to another port and folder" >&2
  exit 1
fi
password="$(cat "$password_file")"
# The password must open it, and nothing may open it without one.
trusting="$(PGPASSWORD="$password" "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt \
  -c "select count(*) from pg_hba_file_rules where auth_method = 'trust'" 2>/dev/null)" || {
  echo "error: the server on 127.0.0.1:$port refuses the password in $password_file: it is another server;" \
       "set BT_PG_PORT and BT_PG_DIR to another port and folder" >&2
  exit 1
}
if [ "$trusting" != 0 ]; then
  echo "error: the server on 127.0.0.1:$port lets clients in without a password (trust auth): it is another" \
       "server; stop it, or set BT_PG_PORT and BT_PG_DIR to another port and folder" >&2
  exit 1
fi
echo "postgresql+psycopg://postgres:$password@127.0.0.1:$port/postgres"
