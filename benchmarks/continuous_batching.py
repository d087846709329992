"""What decoding continuously saves on transformers: fixed batches against calls that join between steps.

The unoptimized HotPotQA program (two query hops and an answer, each a chain of thought) is
evaluated by the embedded model through the real path (one thread per example, calls coalesced
by the batcher), with no LM-call cache, in turn: with fixed batches (every call of a batch
returned when its slowest one ends, `LM.serve_calls`, as before) and continuously (the hf
backend's own `serve_calls`: a call queued while others decode joins them between two steps).
Prints seconds per evaluation, the ratio to fixed batches measured in the same run, prompt
tokens computed, completion tokens, and whether both decoded the same completions.

    python benchmarks/continuous_batching.py [--examples 15] [--repeat 1] [--backend hf]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bt_core.evaluate import EvaluationResult, evaluate
from bt_core.lm import prefix
from bt_core.lm.backends import HF_BACKENDS
from bt_core.lm.base import LM
from bt_core.lm.hf import HFLM
from bt_core.lm.models import resolve_model
from bt_core.tasks import get_task


class FixedBatches(HFLM):
    """The same backend with the generic batcher's service: each batch decodes to its slowest call."""

    serve_calls = LM.serve_calls


MODES = {"fixed batches": FixedBatches, "continuous": HFLM}


def timed(mode: str, backend: str, examples: list) -> tuple[float, EvaluationResult]:
    task = get_task("hotpotqa")
    program = task.program()
    program.set_lm(MODES[mode](resolve_model("smollm2-135m"), backend=backend))  # no cache: every call generates
    prefix.forget()
    start = time.perf_counter()
    result = evaluate(program, examples, task.metric, split="val")
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=15)  # the default budget's validation split
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--backend", choices=HF_BACKENDS, default="hf")
    args = parser.parse_args()
    examples = get_task("hotpotqa").load(0, args.examples, 0, seed=0).val
    timed("continuous", args.backend, examples[:1])  # warm up: load and pack the weights outside the timing
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    last: dict[str, EvaluationResult] = {}
    for _ in range(args.repeat):
        for mode in MODES:  # interleaved, so a busy spell on a shared machine hits every mode
            took, last[mode] = timed(mode, args.backend, examples)
            seconds[mode].append(took)
    print(f"HotPotQA, unoptimized program, {args.examples} validation examples (seed 0), embedded model, "
          f"{args.backend}, greedy, {torch.get_num_threads()} torch threads, {args.repeat} repetition(s) (median):")
    fixed = statistics.median(seconds["fixed batches"])
    for mode, times in seconds.items():
        calls = [c.completion for r in last[mode].results for c in r.calls]
        print(f"  {mode:<13}: {statistics.median(times):6.1f} s ({' '.join(f'{t:.1f}' for t in times)})  "
              f"{fixed / statistics.median(times):.2f}x fixed batches   {len(calls)} calls, prompt tokens computed "
              f"{sum(c.computed_prompt_tokens for c in calls)}, completion tokens "
              f"{sum(c.completion_tokens for c in calls)}", flush=True)
    texts = {mode: [c.completion.text for r in result.results for c in r.calls] for mode, result in last.items()}
    print(f"  the same completions in both modes: {len(set(map(tuple, texts.values()))) == 1}")


if __name__ == "__main__":
    main()
