"""The dashboard's pure shaping rules: the strategy grid, example filters, program diffs, seeds."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bt_core.tasks import get_task
from bt_core.experiments import parse_seeds
from ui.tables import (example_matrix, filter_examples, lm_calls, program_diff, program_text,
                       strategy_grid, strategy_order, strategy_summary, with_vanilla_baseline)


def runs(*rows: tuple[str, int, float | None, str]) -> pd.DataFrame:
    return pd.DataFrame([("iris", "m", *row) for row in rows],
                        columns=["task", "model", "strategy", "seed", "test_score", "status"])


def test_summary_means_seeds_and_deltas_against_each_baseline():
    summary = strategy_summary(runs(("vanilla", 0, 0.2, "done"), ("vanilla", 1, 0.4, "done"),
                                    ("p", 0, 0.6, "done"), ("p -> w -> p", 0, 0.7, "done"),
                                    ("w", 0, None, "running"), ("w", 1, 0.9, "failed")))
    row = summary.set_index("strategy")
    assert list(summary["strategy"]) == ["vanilla", "p", "p -> w -> p"]  # paper order; unfinished left out
    assert row.at["vanilla", "mean"] == pytest.approx(30.0) and row.at["vanilla", "seeds"] == 2
    assert row.at["p -> w -> p", "Δ vanilla"] == pytest.approx(40.0)
    assert row.at["p -> w -> p", "Δ p"] == pytest.approx(10.0)
    assert math.isnan(row.at["p", "Δ p"]) and math.isnan(row.at["p", "Δ w"])


def test_grid_is_one_row_per_setting_with_the_best_cell_highlighted():
    styler = strategy_grid(strategy_summary(runs(("p", 0, 0.5, "done"), ("p", 1, 0.7, "done"),
                                                 ("w", 0, 0.2, "done"))))
    grid = styler.data
    assert list(grid.columns) == ["task", "model", "p", "w"]
    assert grid.at[0, "p"] == "60.0 ± 14.1" and grid.at[0, "w"] == "20.0"
    styles = styler._compute().ctx
    assert styles[(0, 2)] and not styles.get((0, 3))


def test_step_zero_stands_in_for_missing_vanilla_runs():
    measured = runs(("p", 0, 0.6, "done"), ("w", 0, 0.3, "done"), ("p", 1, 0.8, "done"), ("vanilla", 1, 0.2, "done"))
    steps = pd.DataFrame([{"task": "iris", "model": "m", "seed": seed, "index": index, "test_score": score}
                          for seed, index, score in ((0, 0, 0.1), (0, 1, 0.6), (1, 0, 0.25))] * 2)
    vanilla = strategy_summary(with_vanilla_baseline(measured, steps)).set_index("strategy").loc["vanilla"]
    assert vanilla["seeds"] == 2 and vanilla["mean"] == pytest.approx(15.0)  # seed 0 from step 0, seed 1 measured
    assert strategy_summary(with_vanilla_baseline(runs(), steps.iloc[:0])).empty


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


def test_lm_calls_grow_with_the_chain():
    sizes = get_task("iris").sizes["smoke"]
    vanilla, p, pwp = (lm_calls(sizes, s, 1, 1) for s in ("vanilla", "p", "p -> w -> p"))
    assert vanilla == sizes.val + sizes.test
    assert vanilla < p < pwp
