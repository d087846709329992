"""Queue and control runs: what the dashboard and CLI do to the `runs` table.

Launching validates every cell of the grid before inserting anything, so a bad model name
in one cell never leaves half an experiment behind.
"""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bt_core.config import RunConfig, resolve_config
from db.models import Experiment, Run, RunStatus


def parse_seeds(text: str) -> list[int]:
    """'0, 1, 2' or '0-2' -> [0, 1, 2]."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)\s*-\s*(\d+)|(\d+)", part)
        if match is None:
            raise ValueError(f"bad seed {part!r}: use numbers like '0, 1, 2' or a range like '0-2'")
        low, high, single = match.groups()
        seeds += [int(single)] if single else list(range(int(low), int(high) + 1))
    if not seeds:
        raise ValueError("give at least one seed, like '0' or '0, 1, 2'")
    return sorted(set(seeds))


def launch_experiment(sessions: sessionmaker[Session], name: str, tasks: list[str], models: list[str],
                      strategies: list[str], seeds: list[int], budget: str,
                      overrides: dict[str, Any] | None = None) -> int:
    """Queue the grid tasks x models x strategies x seeds as one experiment; return its id."""
    if not (tasks and models and strategies and seeds):
        raise ValueError("pick at least one task, model, strategy and seed")
    configs = [resolve_config(t, m, s, seed, budget, overrides)
               for t, m, s, seed in itertools.product(tasks, models, strategies, seeds)]
    grid = {"tasks": tasks, "models": models, "strategies": strategies, "seeds": seeds,
            "budget": budget, "overrides": overrides or {}}
    with sessions.begin() as session:
        experiment = Experiment(name=name.strip() or "experiment", grid=grid)
        experiment.runs = [new_run(c) for c in configs]
        session.add(experiment)
        session.flush()
        return experiment.id


def new_run(config: RunConfig) -> Run:
    return Run(task=config.task, model=config.model, strategy=config.strategy, seed=config.seed,
               budget=config.budget, config=config.model_dump(), config_hash=config.hash())


def request_cancel(sessions: sessionmaker[Session], run_id: int) -> None:
    """A queued run is cancelled at once; a running one at its worker's next safe point."""
    with sessions.begin() as session:
        session.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.queued)
                        .values(status=RunStatus.cancelled))
        session.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.running)
                        .values(cancel_requested=True))


def retry_run(sessions: sessionmaker[Session], run_id: int) -> None:
    """Queue a failed or cancelled run again; it resumes after its last finished step."""
    with sessions.begin() as session:
        result = session.execute(
            update(Run).where(Run.id == run_id, Run.status.in_([RunStatus.failed, RunStatus.cancelled]))
            .values(status=RunStatus.queued, cancel_requested=False, error=None, worker=None))
        if result.rowcount == 0:
            raise ValueError(f"run {run_id} is not failed or cancelled; only those can be retried")


def delete_run(sessions: sessionmaker[Session], run_id: int, artifacts_root: Path | None = None) -> None:
    """Delete a run that is not running, with its rows (cascade) and its adapters on disk."""
    with sessions.begin() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise ValueError(f"no run {run_id}")
        if run.status == RunStatus.running:
            raise ValueError(f"run {run_id} is running; cancel it first")
        session.delete(run)
    if artifacts_root is not None:
        shutil.rmtree(artifacts_root / f"run-{run_id}", ignore_errors=True)


def runs_of(sessions: sessionmaker[Session], experiment_id: int) -> list[Run]:
    with sessions() as session:
        return list(session.scalars(select(Run).where(Run.experiment_id == experiment_id).order_by(Run.id)))
