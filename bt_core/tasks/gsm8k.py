"""GSM8K: grade-school math word problems solved with chain of thought (the paper's second task).

Data comes from `$BT_DATA_DIR/gsm8k/{train,test}.jsonl` (the original OpenAI files), else from
the Hugging Face hub (`openai/gsm8k`) when `datasets` is installed and the hub is not set
offline. Train and validation are drawn from train.jsonl by the run's seed; test is a fixed
sample of test.jsonl, so every strategy and seed is scored on the same problems. Examples keep
the gold worked solution (as DSPy's GSM8K does), which labeled demos show. The metric
compares the last number in the predicted answer with the gold number after `####`.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from bt_core.modules import ChainOfThought, Example, Module, Prediction
from bt_core.signatures import Field, Signature
from bt_core.tasks.base import Sizes, Splits, Task, register, stratified_split
from bt_core.tasks.data import load_rows

FILES = ("gsm8k/train.jsonl", "gsm8k/test.jsonl")
HUB_ID = "openai/gsm8k"
TEST_SEED = 0  # the test sample does not move with the run's seed

SIGNATURE = Signature(
    inputs=(Field("question", "a math word problem"),),
    outputs=(Field("answer", "the final answer as a single number, without units"),),
    instructions=("Solve the grade-school math word problem. Work it out step by step with short "
                  "arithmetic, then give only the final number as the answer."),
)


class GSM8KProgram(Module):
    def __init__(self) -> None:
        self.solve = ChainOfThought(SIGNATURE, max_new_tokens=192)

    def forward(self, question: str) -> Prediction:
        return self.solve(question=question)


@register
class GSM8K(Task):
    name = "gsm8k"
    description = "Grade-school math; 1 chain-of-thought module; numeric answer match"
    sizes = {
        "smoke": Sizes(train=8, val=6, test=8),
        "default": Sizes(train=20, val=15, test=30),
        "paper": Sizes(train=1000, val=250, test=1319, p_train=100, p_val=250),
    }

    def load(self, train: int, val: int, test: int, seed: int) -> Splits:
        train_rows, test_rows = load_rows(os.environ.get("BT_DATA_DIR"), FILES, "GSM8K", HUB_ID, _from_hub,
                                          keys=("question", "answer"))
        same = lambda e: None
        train_split, val_split = stratified_split(_examples(train_rows), (train, val), seed, label=same)
        (test_split,) = stratified_split(_examples(test_rows), (test,), TEST_SEED, label=same)
        return Splits(train_split, val_split, test_split)

    def program(self) -> Module:
        return GSM8KProgram()

    def metric(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        predicted = parse_number(str(prediction.get("answer", "")))
        return float(predicted is not None and predicted == parse_number(example["answer"]))


def _examples(rows: list[dict]) -> list[Example]:
    """Each keeps its worked solution as `reasoning`, so labeled demos show how to get there."""
    return [Example(question=r["question"], reasoning=gold_reasoning(r["answer"]),
                    answer=gold_answer(r["answer"])).with_inputs("question") for r in rows]


def gold_answer(solution: str) -> str:
    """The number after `####` in a GSM8K solution, without thousands separators."""
    _, sep, number = solution.rpartition("####")
    if not sep:
        raise ValueError(f"a GSM8K answer must end with '#### <number>', got {solution[-60:]!r}")
    return number.strip().replace(",", "")


def gold_reasoning(solution: str) -> str:
    """The solution's steps without the calculator annotations: '48/2 = <<48/2=24>>24' -> '48/2 = 24'."""
    steps, _, _ = solution.rpartition("####")
    return " ".join(_CALCULATOR.sub("", steps).split())


_CALCULATOR = re.compile(r"<<[^>]*>>")
# A number not glued to a word: "$1,234.50", "-7", "18.", "3-4" (gives 3 and 4, not -4).
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])-?\.\d+")


def parse_number(text: str) -> Decimal | None:
    """The last number in `text`, so '18 dollars', '$18.00' and 'She earns 18.' all give 18."""
    found = _NUMBER.findall(text.replace("\u2212", "-"))
    if not found:
        return None
    try:
        return Decimal(found[-1].replace(",", ""))
    except InvalidOperation:
        return None


def _from_hub() -> list[list[dict]]:
    from datasets import load_dataset

    return [list(load_dataset(HUB_ID, "main", split=split)) for split in ("train", "test")]
