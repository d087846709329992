"""GSM8K: loader over the real files, answer parsing and metric, missing data, and the program end to end."""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest

from bt_core.lm.scripted import ScriptedLM
from bt_core.modules import Example, Prediction, capture_trace
from bt_core.tasks import get_task
from bt_core.tasks.gsm8k import gold_answer, gold_reasoning, parse_number

TRAIN_FILE = Path(os.environ["BT_DATA_DIR"]) / "gsm8k" / "train.jsonl"


@pytest.fixture(scope="module")
def task():
    return get_task("gsm8k")


@pytest.fixture(scope="module")
def train_rows() -> list[dict]:
    return [json.loads(line) for line in TRAIN_FILE.read_text().splitlines()]


def questions(examples: list[Example]) -> set[str]:
    return {e["question"] for e in examples}


def test_examples_take_the_question_as_input(task):
    example = task.load(8, 6, 8, seed=0).train[0]
    assert example.inputs() == {"question": example["question"]}


def test_smoke_test_set_is_a_prefix_sample_of_default(task):
    assert questions(task.load(8, 6, 8, seed=0).test) <= questions(task.load(8, 6, 60, seed=0).test)


def test_asking_for_too_many_examples_is_an_error(task):
    with pytest.raises(ValueError, match="asked for"):
        task.load(8, 6, 2000, seed=0)


def test_gold_answers_of_the_real_file(train_rows):
    golds = [gold_answer(r["answer"]) for r in train_rows]
    assert all(re.fullmatch(r"-?\d+", g) for g in golds)
    assert "-7" in golds  # negatives survive
    with_comma = next(r for r in train_rows if "," in r["answer"].rpartition("####")[2])
    assert "," not in gold_answer(with_comma["answer"])


def test_examples_carry_the_worked_solution_without_calculator_notes(task, train_rows):
    assert gold_reasoning(train_rows[0]["answer"]) == (
        "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May.")
    example = task.load(8, 6, 8, seed=0).train[0]
    assert example.inputs().keys() == {"question"}
    assert example["reasoning"] and "<<" not in example["reasoning"] and "####" not in example["reasoning"]


def test_the_last_number_of_real_solutions_is_mostly_the_gold(train_rows):
    """The reference solutions' last lines are realistic answers: prose, $, units, thousands separators."""
    hits = 0
    for row in train_rows:
        body = row["answer"].rpartition("####")[0]
        last_line = re.sub(r"<<[^>]*>>", "", body.strip().splitlines()[-1])
        hits += parse_number(last_line) == Decimal(gold_answer(row["answer"]))
    assert hits / len(train_rows) > 0.95


@pytest.mark.parametrize("text, number", [
    ("72", "72"), ("$1,080", "1080"), ("$990.00", "990"), ("18.0", "18"), ("-7", "-7"), ("\u22127", "-7"),
    ("She earned $10.", "10"), ("10 dollars", "10"), ("**1,000,000**", "1000000"), ("50%", "50"),
    ("120/24 = 5 hours", "5"), ("5-3", "3"), ("0.25", "0.25"), (".5", "0.5"), ("no number", None), ("", None),
])
def test_parse_number(text, number):
    assert parse_number(text) == (Decimal(number) if number else None)


@pytest.mark.parametrize("predicted, score", [
    ("1080", 1.0), ("$1,080.00", 1.0), ("The answer is 1080 apples.", 1.0), ("1,08", 0.0), ("108", 0.0), ("", 0.0),
])
def test_metric(task, predicted, score):
    assert task.metric(Example(question="q", answer="1080"), Prediction(answer=predicted)) == score


def test_a_corrupt_line_is_named(task, tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": \n')
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q"}\n')
    monkeypatch.setenv("BT_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="train.jsonl line 2 is not valid JSON"):
        task.load(1, 0, 1, seed=0)


def test_program_end_to_end_with_a_scripted_lm(task):
    splits = task.load(8, 6, 8, seed=0)
    gold = {" ".join(e["question"].split()): e["answer"] for e in splits.test}

    def script(messages, trained_on):
        question = messages[-1]["content"].removeprefix("Question: ")
        return f"Reasoning: add it up.\nAnswer: The total is ${int(gold[question]):,}.00."

    program = task.program()
    program.set_lm(ScriptedLM(script))
    names = {id(p): name for name, p in program.named_predictors()}
    for example in splits.test:
        with capture_trace() as calls:
            prediction = program(**example.inputs())
        assert [names[id(c.predictor)] for c in calls] == ["solve"]
        assert calls[0].messages[-1]["content"] == f"Question: {' '.join(example['question'].split())}"
        assert task.metric(example, prediction) == 1.0
