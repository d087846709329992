#!/usr/bin/env bash
# Install everything (Chromium and PostgreSQL from Debian for the browser and database tests),
# start a loopback PostgreSQL server, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "error: the browser test needs Debian's chromium: sudo apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
scripts/setup.sh dev
# The database tests run against SQLite and against a real PostgreSQL server; a missing one fails them.
# A server this script starts stops when it ends; one that was running already, or that
# BT_TEST_POSTGRES_URL names, is left as it was.
if [ -z "${BT_TEST_POSTGRES_URL:-}" ]; then
  if ! scripts/postgres.sh status; then
    trap 'scripts/postgres.sh stop || true' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
  url="$(scripts/postgres.sh)"
  export BT_TEST_POSTGRES_URL="$url"
fi
# House rules first (pyproject.toml's [tool.ruff]): a lint or import-order finding fails the run.
.venv/bin/ruff check .
# pytest exits 5 when it collects no test: that is a failure here too.
status=0
.venv/bin/python -m pytest "$@" || status=$?
exit "$status"
