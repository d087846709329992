#!/usr/bin/env bash
# Install what is missing, then start the dashboard on http://localhost:8501 (a worker starts with it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/streamlit run app.py --server.headless true "$@"
