"""Input is bounded before anything is built or written: a launch's seeds, and every value that
a user types into a column, on a real SQLite file and a real PostgreSQL server (which, unlike
SQLite, would refuse an overlong value with a driver error)."""

from __future__ import annotations

import tracemalloc

import pytest
from sqlalchemy import func, select, update

from bt_core.serve.queue import launch_experiment, parse_seeds
from db.limits import EXPERIMENT_NAME_MAX, MAX_SEEDS, MODEL_MAX, SEED_MAX, STRATEGY_COLUMN, STRATEGY_MAX
from db.models import Experiment, Run, Step
from db.session import session_factory


@pytest.fixture
def sessions(db_url):
    return session_factory(db_url)


def chain(steps: int) -> str:
    return " -> ".join(["p", "w"] * (steps // 2) + ["p"] * (steps % 2))


@pytest.mark.parametrize("text, seeds", [("0-99", list(range(100))), ("0-49, 25-74, 75-99", list(range(100))),
                                         ("7, 2-3, 3", [2, 3, 7]), (f"{SEED_MAX}", [SEED_MAX])])
def test_seeds_up_to_the_bound(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [
    ("0-100000000", "too many seeds: '0-100000000' is 100,000,001; one launch takes at most 100"),
    (f"0-{SEED_MAX}", f"too many seeds: '0-{SEED_MAX}' is 2,147,483,648; one launch takes at most 100"),
    ("0-99, 100", "too many seeds: one launch takes at most 100"),
    ("0-49, 50-100", "too many seeds: one launch takes at most 100"),
    ("5-2", "bad seed range '5-2': put the smaller number first, like '2-5'"),
    (f"{SEED_MAX + 1}", f"bad seed '{SEED_MAX + 1}': use whole numbers from 0 to {SEED_MAX}"),
    ("9" * 5000, f"bad seed '{'9' * 40}': use whole numbers"),
    ("-1", "bad seed '-1'"),
])
def test_seeds_beyond_the_bound_are_refused_without_building_them(text, message):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as error:
            parse_seeds(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message in str(error.value) and "\n" not in str(error.value)
    assert peak < 100_000  # bytes: a hundred million seeds would take gigabytes


def nothing_written(sessions) -> bool:
    with sessions() as session:
        return session.scalar(select(func.count(Experiment.id))) == 0 and \
            session.scalar(select(func.count(Run.id))) == 0


@pytest.mark.parametrize("change, message", [
    ({"seeds": list(range(MAX_SEEDS + 1))}, "too many seeds: 101; one launch takes at most 100"),
    ({"name": "n" * (EXPERIMENT_NAME_MAX + 1)}, "experiment name is 201 characters; at most 200"),
    ({"models": ["smollm2-135m", "org/" + "m" * (MODEL_MAX - 3)]}, "model name is 301 characters; at most 300"),
    ({"models": ["/" + "d" * 5000]}, "model name is 5,001 characters; at most 300"),
    ({"strategies": ["p", chain(20)]}, f"strategy: Value error, 96 characters written out; at most {STRATEGY_MAX}"),
    ({"strategies": ["p->" * 40 + "p"]}, "strategy: Value error, 201 characters written out"),
    ({"seeds": [0, SEED_MAX + 1]}, f"seed: Input should be less than or equal to {SEED_MAX}"),
    ({"seeds": [-1]}, "seed: Input should be greater than or equal to 0"),
])
def test_launch_refuses_what_its_columns_cannot_hold_before_writing(sessions, change, message):
    grid = {"name": "t", "tasks": ["iris"], "models": ["smollm2-135m"], "strategies": ["p"], "seeds": [0],
            "budget": "smoke", **change}
    with pytest.raises(ValueError) as error:
        launch_experiment(sessions, **grid)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert nothing_written(sessions)


def test_a_model_path_the_file_system_cannot_hold_is_one_clear_error(sessions):
    with pytest.raises(ValueError, match="model path '/x+/m': File name too long"):
        launch_experiment(sessions, "t", ["iris"], [f"/{'x' * 280}/m"], ["p"], [0], "smoke")
    assert nothing_written(sessions)


def test_the_longest_accepted_values_fit_their_columns(sessions, tmp_path):
    folder = tmp_path / ("m" * 200)
    folder = folder / ("m" * (MODEL_MAX - len(str(folder)) - 1))  # a local model folder of exactly 300 characters
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    strategy = chain(19)  # the longest chain that fits: 19 steps, 91 characters
    assert len(str(folder)) == MODEL_MAX and len(strategy) <= STRATEGY_MAX < len(chain(20))
    name = "n" * EXPERIMENT_NAME_MAX
    launch_experiment(sessions, name, ["iris"], [str(folder)], [strategy], list(range(SEED_MAX - 99, SEED_MAX + 1)),
                      "smoke")
    with sessions.begin() as session:  # what the runner writes of the last step, at its longest
        run = session.scalar(select(Run).where(Run.seed == SEED_MAX))
        session.add(Step(run_id=run.id, index=19, kind="p", label=strategy))
        session.execute(update(Run).where(Run.id == run.id).values(current_step=f"19/19 {strategy}"))
    with sessions() as session:
        run = session.scalar(select(Run).where(Run.seed == SEED_MAX))
        assert (run.experiment.name, run.model, run.strategy) == (name, str(folder), strategy)
        assert len(run.current_step) == len(strategy) + 6 <= STRATEGY_COLUMN
        assert session.scalar(select(func.count(Run.id))) == MAX_SEEDS
