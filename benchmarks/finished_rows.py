"""What letting finished calls leave the batch saves, in one run.

A GSM8K candidate's batch (the same labeled demos before every question) is decoded by the
embedded model to its natural stops (the last field's line, the end token, or the 160-token cap)
two ways after the same prefill (shared prefix computed once, growing cache, as the hf backend does):
transformers' generate with the same stop rule, which computes every row until the last one
stops, and the backend's decoding (bt_core/lm/decode.py), where a finished row leaves the batch.
Prints seconds, the ratio, the rows computed over all steps against the tokens kept, and
whether both decoded the same texts.

    python benchmarks/finished_rows.py [--examples 16] [--demos 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from decode_speed import after_prefix, gsm8k_rows  # this folder is on the path of a script run from it
from transformers import StoppingCriteriaList

from bt_core.lm.decode import decode, prefilled
from bt_core.lm.hf import HFLM
from bt_core.lm.models import resolve_model
from bt_core.lm.stopping import field_closed
from bt_core.lm.threads import follow_threads
from bt_core.tasks import get_task
from tests.stock_generate import FieldStop

LABEL = get_task("gsm8k").program().solve.signature.outputs[-1].label
TOKENS = 160  # GSM8K's chain-of-thought cap


def stock(model, tok, rows: list[list[int]]) -> tuple[float, list[list[int]], int]:
    """(seconds, each row's tokens up to its stop, rows x steps computed) with generate."""
    start = time.perf_counter()
    inputs = after_prefix(model, tok, rows, TOKENS)
    width = inputs["input_ids"].shape[1]
    stop = StoppingCriteriaList([FieldStop(tok, width, LABEL)])
    out = model.generate(**inputs, max_new_tokens=TOKENS, do_sample=False, temperature=None, top_p=None, top_k=None,
                         pad_token_id=tok.pad_token_id, stopping_criteria=stop)
    seconds = time.perf_counter() - start
    new = out[:, width:].tolist()
    kept = [row[:_stop(tok, row)] for row in new]
    return seconds, kept, len(rows) * len(new[0])


def _stop(tok, row: list[int]) -> int:
    """Tokens up to the step at which this row was done (generate pads it after that)."""
    for n in range(1, len(row) + 1):
        if row[n - 1] == tok.eos_token_id or field_closed(tok.decode(row[:n], skip_special_tokens=True), LABEL):
            return n
    return len(row)


def ours(model, tok, rows: list[list[int]]) -> tuple[float, list[list[int]], int]:
    start = time.perf_counter()
    inputs = prefilled(model, after_prefix(model, tok, rows, TOKENS))
    new = decode(model, inputs, TOKENS,
                 finished=lambda row, ids: field_closed(tok.decode(ids, skip_special_tokens=True), LABEL))
    return time.perf_counter() - start, new, sum(map(len, new))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=16)  # the hf backend's batch
    parser.add_argument("--demos", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    lm = HFLM(resolve_model("smollm2-135m"))
    model, tok = lm.model(), lm.tokenizer
    rows = gsm8k_rows(lm, args.examples, args.demos)
    modes = {"generate, rows run to the last": stock, "decode, finished rows leave": ours}
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    results = {}
    with torch.inference_mode():
        follow_threads()
        for _ in range(args.repeat):
            for name, run in modes.items():  # interleaved, so a busy spell hits both
                took, tokens, computed = run(model, tok, rows)
                seconds[name].append(took)
                results[name] = (tokens, computed)
    lengths = sorted(len(t) for t in results["decode, finished rows leave"][0])
    print(f"GSM8K, {args.examples} calls batched after {args.demos} labeled demos, stopped at the last field's "
          f"line or {TOKENS} tokens (new tokens per call: {lengths}), embedded model, fp32, greedy, "
          f"{torch.get_num_threads()} torch threads, {args.repeat} repetition(s) (median):")
    first = statistics.median(seconds[next(iter(modes))])
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"  {name:<32}: {median:6.1f} s ({' '.join(f'{t:.1f}' for t in times)})  {first / median:.2f}x  "
              f"rows computed over all steps {results[name][1]:,}")
    texts = {name: [tok.decode(t, skip_special_tokens=True) for t in tokens] for name, (tokens, _) in results.items()}
    print(f"  both decoded the same texts: {len({str(t) for t in texts.values()}) == 1}")


if __name__ == "__main__":
    main()
