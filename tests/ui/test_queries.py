"""The dashboard's read queries against the real-run database, in SQLite and in PostgreSQL:
paging, picking, searching."""

from __future__ import annotations

import pytest

from db import queries
from db.session import session_factory

pytestmark = pytest.mark.ui


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request):
    return session_factory(request.getfixturevalue("filled_db" if request.param == "sqlite" else "filled_postgres"))


def test_runs_page_is_newest_first_and_pages_with_limit_and_offset(db):
    everything = queries.runs_page(db)
    assert list(everything["id"]) == sorted(everything["id"], reverse=True)
    pages = [queries.runs_page(db, limit=2, offset=offset)["id"].tolist() for offset in (0, 2)]
    assert pages[0] + pages[1] == everything["id"].tolist()
    assert queries.count_runs(db, statuses=["done"]) == len(everything) == 3
    assert queries.count_runs(db, statuses=["failed"]) == 0
    assert (everything["elapsed_s"] > 0).all()


def test_each_step_shows_its_chosen_program(db):
    run_id = int(queries.runs_page(db).set_index("strategy").at["p -> w -> p", "id"])
    steps = queries.evaluated_steps(db, run_id, "test")
    assert [s["label"] for s in steps] == ["vanilla", "p", "p -> w", "p -> w -> p"]
    assert all(s["chosen"] for s in steps)
    scores = queries.example_scores(db, steps[-1]["program_id"], "test")
    assert list(scores["example_index"]) == sorted(scores["example_index"]) and len(scores) > 0


def test_search_finds_examples_by_input_or_output_text(db):
    run_id = int(queries.runs_page(db).set_index("strategy").at["p", "id"])
    program = queries.evaluated_steps(db, run_id, "test")[-1]["program_id"]
    everything = set(queries.example_scores(db, program, "test")["example_index"])
    gold = {i for i in everything if queries.example_result(db, program, "test", i)["example"]["species"] == "setosa"}
    assert gold and gold <= queries.search_examples(db, [program], "test", "SETOSA") <= everything
    assert queries.search_examples(db, [program], "test", "no such text anywhere") == set()


def test_final_step_and_history_feed_exports_and_estimates(db):
    run_id = int(queries.runs_page(db).set_index("strategy").at["p -> w -> p", "id"])
    final = queries.final_step(db, run_id)
    assert final["label"] == "p -> w -> p" and "classify" in final["program_state"]
    assert queries.seconds_per_call(db, "smollm2-135m") > 0
    assert queries.seconds_per_call(db, "never-used") is None
