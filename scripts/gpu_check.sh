#!/usr/bin/env bash
# Smoke check of the CUDA path that needs no download: builds the tiny random-weight Llama of
# tests/tiny_model.py in a temporary folder, runs `p -> w -> p` on CUDA with the transformers
# backend (bf16) and with vLLM where it is installed, prints each step's time, then trains one
# LoRA adapter on CUDA and says whether it changed the model's outputs (the tiny model's runs
# fine-tune on nothing: its completions are empty, so no trace passes the metric).
#
# Exit codes: 0 checked; 3 no CUDA device here (stopped after building the model, before anything
# that needs CUDA); anything else a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
work=$(mktemp -d -t bt-gpu-check-XXXXXX)
trap 'rm -rf "$work"' EXIT
"$PYTHON" - "$work" <<'PY'
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

from transformers.utils import logging as transformers_logging

from tests.tiny_model import build_tiny_model

work = Path(sys.argv[1])
transformers_logging.disable_progress_bar()  # saving the model draws one; the check's output is its lines
model = build_tiny_model(work / "model")
import torch  # noqa: E402

if not torch.cuda.is_available():
    print(f"gpu_check: no CUDA device (torch {torch.__version__}): built the tiny model, "
          "stopped before the CUDA run (exit 3)")
    sys.exit(3)
print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}")

from sqlalchemy import select  # noqa: E402

from bt_core.lm.base import LoraConfig  # noqa: E402
from bt_core.lm.hf import HFLM, load_base, merged  # noqa: E402
from bt_core.lm.models import resolve_model  # noqa: E402
from db.models import Step  # noqa: E402
from db.session import session_factory  # noqa: E402

for backend in ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") else []):
    url = f"sqlite:///{work / backend}.sqlite"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "bt_core", "--db", url, "run", "--task", "iris", "--model",
                             str(model), "--strategy", "p -> w -> p", "--budget", "smoke", "--backend", backend],
                            capture_output=True, text=True, env={**os.environ, "BT_HOME": str(work)})
    print(f"{backend}: p -> w -> p exit {result.returncode} in {time.perf_counter() - start:.1f}s")
    if result.returncode != 0:
        print(result.stdout[-2000:] + result.stderr[-3000:])
        sys.exit(1)
    with session_factory(url)() as session:
        for step in session.scalars(select(Step).order_by(Step.index)):
            took = (step.finished_at - step.started_at).total_seconds()
            print(f"  {step.label:<12} {took:6.2f}s  val {step.val_score:.0%}")

spec = resolve_model(str(model))
base, tokenizer = load_base(spec)
print(f"hf model on {base.device} in {base.dtype}")
conversations = [[{"role": "user", "content": f"Name a fruit, {n}."}, {"role": "assistant", "content": fruit}]
                 for n, fruit in enumerate(["apple", "pear", "plum", "fig"] * 2)]
start = time.perf_counter()
log = HFLM(spec).train_adapter(conversations, LoraConfig(learning_rate=1e-2), work / "adapter")
print(f"LoRA training on CUDA: {len(log.losses)} steps in {time.perf_counter() - start:.2f}s, "
      f"loss {log.losses[0][1]:.3f} -> {log.losses[-1][1]:.3f}")
ids = tokenizer("Name a fruit.", return_tensors="pt").input_ids.to(base.device)
with torch.inference_mode():
    change = (merged(spec, log.adapter_path)(ids).logits - base(ids).logits).abs().max().item()
print(f"adapter changed the outputs: {'yes' if change > 0 else 'NO'} (largest logit change {change:.3g})")
sys.exit(0 if change > 0 else 1)
PY
