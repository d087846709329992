"""A Compare database with known scores, written through the ORM: Iris at the default budget,
3 seeds of p, w and p -> w -> p (no vanilla runs: step 0 stands in), 30 test examples each.

Example i of a seed passes when i < passing[seed], so every pair's outcome, and with it each
McNemar p-value, is known: e.g. p -> w -> p beats p on 4 + 3 + 1 examples and loses on none.
Seed 1's w step found no passing trace and trained nothing. One more p run with 5 LoRA epochs
forms a group of its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bt_core.serve.config import resolve_config
from bt_core.serve.queue import new_run
from bt_core.strategy import format_strategy, parse_strategy
from db.models import ExampleScore, Experiment, Program, RunStatus, Step, StepStatus, Training
from db.session import session_factory

TEST = 30
SEEDS = (0, 1, 2)
VANILLA = 9  # passing examples of step 0 (the unoptimized program), every seed
PASSING = {"p": (20, 18, 22), "w": (10, 9, 11), "p -> w -> p": (24, 21, 23)}
UNTRAINED = {("w", 1)}
OTHER_SETTINGS: dict[str, Any] = {"lora": {"epochs": 5}}
OTHER_PASSING = 25  # the 5-epoch p run, seed 0


def build_compare_db(url: str) -> None:
    cells = [(strategy, seed, passing[seed], None) for strategy, passing in PASSING.items() for seed in SEEDS]
    with session_factory(url).begin() as session:
        experiment = Experiment(name="known scores")
        session.add(experiment)
        session.flush()
        for strategy, seed, passing, overrides in [*cells, ("p", 0, OTHER_PASSING, OTHER_SETTINGS)]:
            _add_run(session, experiment.id, strategy, seed, passing, overrides)


def _add_run(session: Session, experiment_id: int, strategy: str, seed: int, passing: int,
             overrides: dict[str, Any] | None) -> None:
    config = resolve_config("iris", "smollm2-135m", strategy, seed, "default", {"backend": "hf", **(overrides or {})})
    run = new_run(config)
    run.experiment_id, run.status, run.progress, run.test_score = experiment_id, RunStatus.done, 1.0, passing / TEST
    run.backend = "hf"  # what its worker would have recorded
    session.add(run)
    session.flush()
    kinds = ["vanilla", *parse_strategy(strategy)]
    for index, kind in enumerate(kinds):
        scored = VANILLA if index == 0 else passing if index == len(kinds) - 1 else None
        step = Step(run_id=run.id, index=index, kind=kind, label=format_strategy(kinds[1:index + 1]),
                    status=StepStatus.done, program_state={}, test_score=None if scored is None else scored / TEST)
        session.add(step)
        session.flush()
        program = Program(run_id=run.id, step_id=step.id, label="step result", state={}, chosen=True,
                          role="candidate" if kind == "p" else "result")  # a p step's result is its best candidate
        session.add(program)
        session.flush()
        if scored is not None:
            session.add_all(ExampleScore(run_id=run.id, step_id=step.id, program_id=program.id, split="test",
                                         example_index=i, score=float(i < scored), example={"i": i})
                            for i in range(TEST))
        if kind == "w":
            untrained = (strategy, seed) in UNTRAINED
            session.add(Training(run_id=run.id, step_id=step.id, examples=0 if untrained else 12, hyperparams={},
                                 error="none of the 15 training traces passed the metric" if untrained else None))
