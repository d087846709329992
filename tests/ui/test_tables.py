"""The dashboard's pure shaping rules: strategy order, example filters, program diffs, seeds."""

from __future__ import annotations

import pandas as pd
import pytest

from bt_core.serve.queue import parse_seeds
from ui.tables import example_matrix, filter_examples, program_diff, program_text, strategy_order


def test_custom_chains_sort_after_the_papers_strategies():
    assert strategy_order(["w -> p -> w", "p -> w -> p", "vanilla", "p -> p"]) == [
        "vanilla", "p -> w -> p", "p -> p", "w -> p -> w"]


def test_filters_failures_disagreements_and_search_hits():
    matrix = example_matrix({"a": pd.DataFrame({"example_index": [0, 1, 2], "score": [1.0, 0.0, 1.0]}),
                             "b": pd.DataFrame({"example_index": [0, 1, 2], "score": [1.0, 0.0, 0.0]})})
    assert list(filter_examples(matrix, failures=True).index) == [1, 2]
    assert list(filter_examples(matrix, disagree=True).index) == [2]
    assert list(filter_examples(matrix, matching={0, 2}).index) == [0, 2]
    assert list(filter_examples(matrix, failures=True, matching={0, 1}).index) == [1]


def test_program_diff_shows_a_changed_demo():
    signature = {"inputs": [{"name": "question", "desc": ""}], "outputs": [{"name": "answer", "desc": ""}],
                 "instructions": "Answer."}
    before = {"qa": {"signature": signature, "demos": []}}
    after = {"qa": {"signature": signature, "demos": [{"question": "2+2?", "answer": "4"}]}}
    diff = program_diff(program_text(before), program_text(after), "a", "b")
    assert "+demo 1:" in diff and "+  Question: 2+2?" in diff and "+  Answer: 4" in diff
    assert program_diff(program_text(before), program_text(before), "a", "b") == ""


def test_seeds_accept_lists_and_ranges_and_reject_words():
    assert parse_seeds("2, 0-1") == [0, 1, 2]
    with pytest.raises(ValueError, match="bad seed 'x'"):
        parse_seeds("x")


