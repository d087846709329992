"""The Compare page through AppTest: intervals, verdicts, the untrained-w mark and the CSV's
columns, on the known-score database (tests/comparedb.py) and on real smoke runs (`filled_db`)."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from db import queries
from db.session import session_factory
from tests.comparedb import build_compare_db
from tests.ui.test_pages import shown_text, start

pytestmark = pytest.mark.ui
CSV_COLUMNS = {"mean", "std", "ci_low", "ci_high", "seeds", "examples", "untrained_w_seeds",
               "Δ vanilla", "Δ vanilla CI low", "Δ vanilla CI high", "Δ vanilla p", "Δ vanilla verdict"}


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """filename -> bytes of every download the page offers (AppTest keeps them in a storage it drops)."""
    files: dict[str, bytes] = {}
    keep = MemoryMediaFileStorage.load_and_get_id

    def load(self, data, mimetype, kind, filename=None):
        files[filename] = data
        return keep(self, data, mimetype, kind, filename)
    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", load)
    return files


def csv_of(downloads: dict[str, bytes]) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(downloads["bettertogether-compare.csv"]), keep_default_na=False)


@pytest.fixture
def known_db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'known.sqlite'}"
    build_compare_db(url)
    return url


def test_grid_deltas_and_marks_on_known_scores(known_db, monkeypatch, downloads):
    app = start(known_db, monkeypatch, "compare")
    grid = app.dataframe[0].value
    assert list(grid.columns) == ["task", "model", "budget", "backend", "settings", "vanilla", "p", "w", "p -> w -> p"]
    assert list(grid["settings"]) == ["", "lora.epochs=5"]
    assert grid.at[0, "p"] == "66.7 ± 6.7 [50.1, 83.2] 30×3" and grid.at[0, "w"].endswith("†")
    deltas = app.dataframe[1].value.set_index(["setting", "strategy", "versus"])
    assert deltas.at[("iris · smollm2-135m · default · hf", "p -> w -> p", "p"), "verdict"] == "distinguishable"
    assert deltas.at[("iris · smollm2-135m · default · hf", "w", "vanilla"), "verdict"] == "within noise"
    text = shown_text(app)
    assert "30 test examples × 3 seeds" in text and "trained nothing" in text
    csv = csv_of(downloads).set_index(["settings", "strategy"])
    assert CSV_COLUMNS <= set(csv.columns)
    assert csv.at[("", "p -> w -> p"), "Δ p verdict"] == "distinguishable"
    assert csv.at[("", "w"), "untrained_w_seeds"] == 1
    assert len(app.get("plotly_chart")) == 2


def test_any_two_strategies_are_compared_on_request(known_db, monkeypatch):
    app = start(known_db, monkeypatch, "compare")
    strategy, versus = app.selectbox(key="strategy"), app.selectbox(key="versus")
    strategy.set_value("p -> w -> p")
    versus.set_value("w").run()
    picked = app.dataframe[2].value
    assert list(picked["versus"]) == ["w"] and list(picked["verdict"]) == ["distinguishable"]
    versus.set_value("p -> w -> p").run()
    assert "Pick two different strategies" in shown_text(app)


def test_real_smoke_runs_show_intervals_and_verdicts(filled_db, monkeypatch, downloads):
    app = start(filled_db, monkeypatch, "compare")
    grid = app.dataframe[0].value
    assert list(grid.columns)[-4:] == ["vanilla", "p", "w", "p -> w -> p"]
    assert all(re.fullmatch(r"\d+\.\d ± 0\.0 \[\d+\.\d, \d+\.\d\] 15×1( †)?", grid.at[0, s])
               for s in ("vanilla", "p", "w", "p -> w -> p"))
    deltas = app.dataframe[1].value
    assert set(deltas["verdict"]) <= {"distinguishable", "within noise"} and (deltas["pairs"] == 15).all()
    assert "15 test examples × 1 seeds" in shown_text(app)
    assert CSV_COLUMNS <= set(csv_of(downloads).columns)


def test_real_runs_of_two_seeds_pool_over_seeds_with_paired_intervals(filled_seeds_db, monkeypatch, downloads):
    """The two seeds are two experiments: the user picks all their runs."""
    app = start(filled_seeds_db, monkeypatch, "compare")
    app.segmented_control[0].set_value("Chosen runs").run()
    app.multiselect[0].set_value(queries.runs_page(session_factory(filled_seeds_db))["id"].tolist()).run()
    grid = app.dataframe[0].value
    assert len(grid) == 1, "the two seeds' runs belong in one row"
    cells = [grid.at[0, s] for s in ("vanilla", "p", "w", "p -> w -> p")]
    assert all(re.fullmatch(r"\d+\.\d ± \d+\.\d \[\d+\.\d, \d+\.\d\] 15×2( †)?", c) for c in cells), cells
    deltas = app.dataframe[1].value
    assert (deltas["pairs"] == 30).all(), "each delta pairs 15 test examples under each of 2 seeds"
    assert set(deltas["verdict"]) <= {"distinguishable", "within noise"}
    assert "15 test examples × 2 seeds" in shown_text(app)
    csv = csv_of(downloads).set_index("strategy")
    assert (csv["seeds"] == 2).all() and (csv["examples"] == 15).all()
    assert (csv["ci_low"] <= csv["mean"]).all() and (csv["mean"] <= csv["ci_high"]).all()


def test_no_chosen_run_says_so(known_db, monkeypatch):
    app = start(known_db, monkeypatch, "compare")
    app.segmented_control[0].set_value("Chosen runs").run()
    assert not app.exception and "No finished run to compare yet." in [i.value for i in app.info]
