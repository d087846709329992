"""Tokens per second of the embedded model: one call at a time vs 16 concurrent calls batched.

Both paths generate for the same prompts with the same greedy settings and no cache; the
batched path goes through LM.chat from 16 threads, exactly as an evaluation does. Two
workloads: long-form answers (every call writes about the same number of tokens) and
zero-shot Iris prompts (lengths vary, so a padded batch waits for its longest call).

    python benchmarks/lm_throughput.py [--model smollm2-135m] [--tokens 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bt_core import adapter  # noqa: E402
from bt_core.lm.base import SamplingParams  # noqa: E402
from bt_core.lm.hf import HFLM, load_base  # noqa: E402
from bt_core.lm.models import resolve_model  # noqa: E402
from bt_core.tasks import get_task  # noqa: E402


def long_form(n: int) -> list[list[dict[str, str]]]:
    topics = ["irises", "rivers", "bridges", "owls", "glaciers", "violins", "deserts", "comets"]
    return [[{"role": "user", "content": f"Write a detailed paragraph about {topics[i % len(topics)]}, part {i}."}]
            for i in range(n)]


def iris_prompts(n: int) -> list[list[dict[str, str]]]:
    iris = get_task("iris")
    program = iris.program()
    examples = iris.load(0, 0, n, seed=0).test
    signature = program.classify.signature
    return [adapter.render(signature, [], e.inputs()) for e in examples]


def tokens_per_s(run) -> tuple[float, float]:
    start = time.perf_counter()
    completions = run()
    seconds = time.perf_counter() - start
    return sum(c.completion_tokens for c in completions) / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--calls", type=int, default=16)
    args = parser.parse_args()
    spec = resolve_model(args.model)
    load_base(spec)
    lm = HFLM(spec, max_batch_size=args.calls)  # no cache: every call generates
    params = SamplingParams(max_new_tokens=args.tokens)
    lm.generate(long_form(2), params)  # warm up
    print(f"model {args.model}, {args.calls} calls, up to {args.tokens} new tokens, greedy, device {lm.model().device}")
    for name, batch in [("long-form answers", long_form(args.calls)), ("zero-shot Iris", iris_prompts(args.calls))]:
        sequential, seq_s = tokens_per_s(lambda: [lm.generate([m], params)[0] for m in batch])
        with ThreadPoolExecutor(args.calls) as pool:
            batched, bat_s = tokens_per_s(lambda: list(pool.map(lambda m: lm.chat(m, params), batch)))
        print(f"{name}:")
        print(f"  one call at a time      : {sequential:7.1f} tokens/s  ({seq_s:.1f} s)")
        print(f"  {args.calls} concurrent, batched: {batched:7.1f} tokens/s  ({bat_s:.1f} s)")
        print(f"  ratio batched / one at a time: {batched / sequential:.2f}x  (goal >= 4x)")


if __name__ == "__main__":
    main()
