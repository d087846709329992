"""What attending row by row saves in a prefill: HotPotQA answer prompts, as one masked batch or ragged.

A HotPotQA answer call's prompt holds its retrieved passages, so the calls of one batch differ
by hundreds of tokens after the prefix they share (system prompt, instructions, demos). Here a
batch of answer prompts (each example's question with 3 to 6 of the passages BM25 finds for it,
as two hops of 3 leave after duplicates go, behind `--demos` demos: other examples with their
passages and gold answer) is prefilled by the hf backend's own path (`hf.generation_inputs`:
prefix once, then the suffixes) in two ways, in turn: every layer's attention over the padded
batch with its mask, as before bt_core/lm/attention.py's `Ragged`, and row by row over each
row's own keys (`Ragged`, the backend's path). Prints seconds, the ratio to the masked batch
measured in the same run, and whether both give the same next token for every row.

    python benchmarks/ragged_prefill.py [--examples 16] [--demos 2] [--repeat 3] [--backend hf-bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch

from bt_core import adapter
from bt_core.lm import attention, hf, packed_linear, prefix
from bt_core.lm.backends import HF_BACKENDS
from bt_core.lm.base import chat_prompt
from bt_core.lm.hf import HFLM
from bt_core.lm.models import resolve_model
from bt_core.lm.threads import follow_threads
from bt_core.tasks import get_task
from bt_core.tasks.hotpotqa import format_context, retriever

MODES = ("masked batch", "ragged")


def answer_rows(lm: HFLM, examples: int, demos: int) -> list[list[int]]:
    task = get_task("hotpotqa")
    signature = task.program().generate_answer.signature
    search = retriever()
    data = task.load(0, examples + demos, 0, seed=0).val
    shown = [{"context": format_context(search.search(e["question"], 3)), "question": e["question"],
              "reasoning": "The passages name it.", "answer": e["answer"]} for e in data[examples:]]
    prompts = [adapter.render(signature, shown, {"context": format_context(search.search(e["question"], 3 + at % 4)),
                                                 "question": e["question"]})
               for at, e in enumerate(data[:examples])]
    return lm.tokenizer([chat_prompt(lm.tokenizer, p) for p in prompts], add_special_tokens=False).input_ids


def prefill(model: torch.nn.Module, tok, rows: list[list[int]], mode: str) -> tuple[float, torch.Tensor]:
    """(seconds, next token per batch row) for one mode, from no kept prefix."""
    prefix.forget()
    masked = mock.patch.object(attention.Ragged, "of", return_value=None) if mode == "masked batch" else None
    with torch.inference_mode(), packed_linear.packed(model), masked or mock.MagicMock():
        follow_threads()
        start = time.perf_counter()
        inputs, _, order = hf.generation_inputs(model, tok, rows, 1)
        seconds = time.perf_counter() - start
    by_row = dict(zip(order, inputs["logits"].argmax(-1).tolist()))
    return seconds, torch.tensor([by_row[row] for row in range(len(rows))])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=16)  # the hf backend's batch
    parser.add_argument("--demos", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=HF_BACKENDS, default="hf-bf16")
    args = parser.parse_args()
    lm = HFLM(resolve_model("smollm2-135m"), backend=args.backend)
    model, tok = lm.model(), lm.tokenizer
    rows = answer_rows(lm, args.examples, args.demos)
    prefill(model, tok, rows[:2], "ragged")  # warm up: pack the weights outside the timing
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    tokens = {}
    for _ in range(args.repeat):
        for mode in MODES:  # interleaved, so a busy spell on a shared machine hits every mode
            took, tokens[mode] = prefill(model, tok, rows, mode)
            seconds[mode].append(took)
    lengths = sorted(map(len, rows))
    print(f"HotPotQA answer prompts behind {args.demos} demos, {args.examples} calls ({lengths[0]}-{lengths[-1]} "
          f"prompt tokens, {prefix.shared_prefix(rows)} shared, {sum(lengths)} in all), embedded model, {lm.dtype}, "
          f"{torch.get_num_threads()} torch threads, {args.repeat} repetitions (median):")
    base = statistics.median(seconds[MODES[0]])
    for mode, times in seconds.items():
        same = (tokens[mode] == tokens[MODES[0]]).sum().item()
        print(f"  {mode:<12}: {statistics.median(times):6.2f} s ({' '.join(f'{t:.2f}' for t in times)})  "
              f"{base / statistics.median(times):.2f}x the masked batch   "
              f"same next token as the masked batch in {same} of {len(rows)} rows", flush=True)


if __name__ == "__main__":
    main()
