"""What prefix KV reuse saves on transformers: one candidate program's evaluation, reuse off and on.

An Iris candidate as a p step builds it (LabeledFewShot: the same labeled demos before every
question) is evaluated on the test split by the embedded model through the real path (one
thread per example, calls coalesced into batches, continuation calls included), with no
LM-call cache, in turn: with `BT_PREFIX_REUSE=0`; with reuse from no kept prefix (what the
first batch of a candidate saves); and again with the prefix that run kept (what the candidate's
next batches save). Prints seconds per evaluation, ratios against reuse off measured in the same
run, the prompt tokens sent and actually computed, and whether all decoded the same answers.

    python benchmarks/prefix_reuse.py [--examples 16] [--demos 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bt_core.evaluate import EvaluationResult, evaluate
from bt_core.lm import prefix
from bt_core.lm.hf import HFLM
from bt_core.lm.models import resolve_model
from bt_core.modules import Module
from bt_core.optimizers.bootstrap import LabeledFewShot
from bt_core.tasks import get_task


def candidate(demos: int, examples: int) -> tuple[Module, list]:
    iris = get_task("iris")
    splits = iris.load(15, 0, examples, seed=0)
    program = LabeledFewShot(k=demos).compile(iris.program(), trainset=splits.train)
    program.set_lm(HFLM(resolve_model("smollm2-135m"), max_batch_size=examples))  # no cache: every call generates
    return program, splits.test


MODES = {"reuse off": "0", "reuse on, fresh prefix": "1", "reuse on, kept prefix": "1"}


def timed(program: Module, test: list, mode: str) -> tuple[float, EvaluationResult]:
    os.environ["BT_PREFIX_REUSE"] = MODES[mode]
    if mode == "reuse on, fresh prefix":
        prefix.forget()
    start = time.perf_counter()
    result = evaluate(program, test, get_task("iris").metric, split="test", threads=len(test))
    return time.perf_counter() - start, result


def tokens(result: EvaluationResult) -> tuple[int, int]:
    """(prompt tokens sent, prompt tokens computed) over every call of the evaluation."""
    completions = [c.completion for r in result.results for c in r.calls]
    return sum(c.prompt_tokens for c in completions), sum(c.computed_prompt_tokens for c in completions)


def answers(result: EvaluationResult) -> list[str]:
    return [c.completion.text for r in result.results for c in r.calls]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=16)  # one batch: the evaluation's threads
    parser.add_argument("--demos", type=int, default=3)  # the paper's most per module
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    program, test = candidate(args.demos, args.examples)
    timed(program, test[:2], "reuse off")  # warm up: load the weights outside the timing
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    last: dict[str, EvaluationResult] = {}
    for _ in range(args.repeat):
        for mode in MODES:  # interleaved, so a busy spell on a shared machine hits every mode
            took, last[mode] = timed(program, test, mode)
            seconds[mode].append(took)
    print(f"Iris, {args.examples} examples batched, {args.demos} labeled demos, embedded model, greedy, "
          f"{os.environ.get('OMP_NUM_THREADS', 'all')} torch threads, {args.repeat} repetitions (median):")
    off = statistics.median(seconds["reuse off"])
    for mode, times in seconds.items():
        sent, computed = tokens(last[mode])
        print(f"  {mode:<24}: {statistics.median(times):6.1f} s ({' '.join(f'{t:.1f}' for t in times)})  "
              f"{off / statistics.median(times):.2f}x reuse off   prompt tokens sent {sent}, computed {computed} "
              f"({computed / sent:.0%})", flush=True)
    same = len({tuple(answers(result)) for result in last.values()}) == 1
    print(f"  {len(answers(last['reuse off']))} calls an evaluation; the same completions in every mode: {same}")


if __name__ == "__main__":
    main()
