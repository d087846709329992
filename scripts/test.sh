#!/usr/bin/env bash
# Install everything (Chromium from Debian for the browser test) and run the whole test suite.
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
# pytest exits 5 when it collects no test: that is a failure here too.
exec .venv/bin/python -m pytest "$@"
