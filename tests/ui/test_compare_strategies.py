"""ui.compare_strategies on a database of known scores (tests/comparedb.py): like runs grouped, step 0
standing in for vanilla, each cell's interval and each delta's p-value as scipy computes them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from db import queries
from db.session import session_factory
from tests.comparedb import OTHER_PASSING, PASSING, TEST, VANILLA, build_compare_db
from ui.compare_strategies import Comparison, compare, csv_table, grid, pair_deltas

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> Comparison:
    url = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'known.sqlite'}"
    build_compare_db(url)
    db = session_factory(url)
    runs = queries.compare_runs(db)
    ids = runs["id"].tolist()
    return compare(runs, queries.test_example_scores(db, ids), queries.untrained_w_steps(db, ids))


def cell(comparison: Comparison, strategy: str, settings: str = ""):
    cells = comparison.cells
    return cells[(cells["strategy"] == strategy) & (cells["settings"] == settings)].squeeze()


def delta(comparison: Comparison, strategy: str, versus: str, settings: str = ""):
    deltas = comparison.deltas
    return deltas[(deltas["strategy"] == strategy) & (deltas["versus"] == versus)
                  & (deltas["settings"] == settings)].squeeze()


def test_overridden_settings_form_their_own_group_with_their_own_baseline(comparison):
    groups = comparison.cells.groupby("settings")["strategy"].apply(list).to_dict()
    assert groups == {"": ["vanilla", "p", "w", "p -> w -> p"], "lora.epochs=5": ["vanilla", "p"]}
    assert cell(comparison, "p", "lora.epochs=5")["mean"] == pytest.approx(100 * OTHER_PASSING / TEST)
    assert delta(comparison, "p", "vanilla", "lora.epochs=5")["pairs"] == TEST  # its own seed-0 step 0
    assert set(comparison.cells["backend"]) == {"hf"} and set(comparison.cells["budget"]) == {"default"}


def test_cells_are_means_over_seeds_with_a_t_interval(comparison):
    p = cell(comparison, "p")
    means = np.array(PASSING["p"]) / TEST
    low, high = stats.t.interval(0.95, 2, loc=means.mean(), scale=stats.sem(means))
    assert p["mean"] == pytest.approx(100 * means.mean()) and p["std"] == pytest.approx(100 * means.std(ddof=1))
    assert (p["ci_low"], p["ci_high"]) == pytest.approx((100 * low, 100 * high))
    assert (p["seeds"], p["examples"]) == (3, TEST)
    vanilla = cell(comparison, "vanilla")  # step 0 of each seed; seeds agree, so Wilson over 90 examples
    wilson = stats.binomtest(3 * VANILLA, 3 * TEST).proportion_ci(method="wilson")
    assert vanilla["std"] == 0 and (vanilla["ci_low"], vanilla["ci_high"]) == pytest.approx(
        (100 * wilson.low, 100 * wilson.high))


def test_deltas_pair_seeds_and_examples_with_mcnemar_p_values(comparison):
    chain = delta(comparison, "p -> w -> p", "p")  # wins 4 + 3 + 1, loses none
    assert chain["delta"] == pytest.approx(100 * 8 / 90) and chain["pairs"] == 90 and chain["seeds"] == 3
    assert chain["p_value"] == pytest.approx(stats.binomtest(8, 8).pvalue)
    assert chain["ci_low"] > 0 and chain["verdict"] == "distinguishable"
    w = delta(comparison, "w", "vanilla")  # wins 1 + 0 + 2
    assert w["p_value"] == pytest.approx(0.25) and w["ci_low"] <= 0 <= w["ci_high"]
    assert w["verdict"] == "within noise"
    assert delta(comparison, "vanilla", "p").empty  # each pair once: p - vanilla, not also its negation


def test_a_w_step_that_trained_nothing_is_marked_everywhere(comparison):
    assert cell(comparison, "w")["untrained_w_seeds"] == 1 and cell(comparison, "p")["untrained_w_seeds"] == 0
    assert delta(comparison, "w", "p")["untrained_w"] == "w: 1 of 3 seeds trained nothing"
    assert delta(comparison, "p -> w -> p", "p")["untrained_w"] == ""
    row = grid(comparison.cells).data.iloc[0]
    assert row["w"].endswith("†") and row["p"] == "66.7 ± 6.7 [50.1, 83.2] 30×3"
    assert csv_table(comparison).set_index(["settings", "strategy"]).at[("", "w"), "untrained_w_seeds"] == 1


def test_any_two_strategies_and_the_csv_columns(comparison):
    picked = pair_deltas(comparison, "p -> w -> p", "w")
    assert len(picked) == 1 and picked.iloc[0]["delta"] == pytest.approx(100 * (14 + 12 + 12) / 90)
    table = csv_table(comparison)
    assert {"mean", "std", "ci_low", "ci_high", "seeds", "examples", "Δ p", "Δ p CI low", "Δ p CI high", "Δ p p",
            "Δ p verdict", "Δ vanilla verdict", "Δ w p"} <= set(table.columns)
    assert len(table) == len(comparison.cells)
