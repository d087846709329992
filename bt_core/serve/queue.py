"""Queue and control runs: what the dashboard and CLI do to the `runs` table, and the workers
that serve it (which are alive, starting one). Torch-free: it never imports the runner.

Launching validates every cell of the grid before inserting anything, so a bad model name
in one cell never leaves half an experiment behind.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from bt_core.serve.config import RunConfig, resolve_config
from bt_core.serve.lease import stale_after_s
from db.clock import database_now
from db.limits import EXPERIMENT_NAME_MAX, MAX_SEEDS, SEED_MAX
from db.models import Experiment, Run, RunStatus, Worker
from db.session import Sessions, data_dir

SEED_PART = re.compile(r"([0-9]{1,10})\s*-\s*([0-9]{1,10})|([0-9]{1,10})")


def parse_seeds(text: str) -> list[int]:
    """'0, 1, 2' or '0-2' -> [0, 1, 2]. A range is sized before it is built: '0-100000000' is
    refused at once rather than made into a hundred million seeds in the server's memory."""
    seeds: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        usage = (f"bad seed {part[:40]!r}: use whole numbers from 0 to {SEED_MAX}, like '0, 1, 2' "
                 "or a range like '0-2'")
        match = SEED_PART.fullmatch(part)
        if match is None:
            raise ValueError(usage)
        low, high, single = match.groups()
        first, last = (int(single), int(single)) if single else (int(low), int(high))
        if last > SEED_MAX:
            raise ValueError(usage)
        if first > last:
            raise ValueError(f"bad seed range {part!r}: put the smaller number first, like '{last}-{first}'")
        if last - first >= MAX_SEEDS:
            raise ValueError(f"too many seeds: {part!r} is {last - first + 1:,}; one launch takes at most {MAX_SEEDS}")
        seeds.update(range(first, last + 1))
        if len(seeds) > MAX_SEEDS:
            raise ValueError(f"too many seeds: one launch takes at most {MAX_SEEDS}")
    if not seeds:
        raise ValueError("give at least one seed, like '0' or '0, 1, 2'")
    return sorted(seeds)


def experiment_name(name: str) -> str:
    """The name as stored: stripped, "experiment" when empty; ValueError when it cannot fit."""
    name = name.strip()
    if len(name) > EXPERIMENT_NAME_MAX:
        raise ValueError(f"experiment name is {len(name):,} characters; at most {EXPERIMENT_NAME_MAX}")
    return name or "experiment"


def launch_experiment(sessions: Sessions, name: str, tasks: list[str], models: list[str],
                      strategies: list[str], seeds: list[int], budget: str,
                      overrides: dict[str, Any] | None = None) -> int:
    """Queue the grid tasks x models x strategies x seeds as one experiment; return its id."""
    if not (tasks and models and strategies and seeds):
        raise ValueError("pick at least one task, model, strategy and seed")
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"too many seeds: {len(seeds):,}; one launch takes at most {MAX_SEEDS}")
    name = experiment_name(name)
    configs = [resolve_config(t, m, s, seed, budget, overrides)
               for t, m, s, seed in itertools.product(tasks, models, strategies, seeds)]
    grid = {"tasks": tasks, "models": models, "strategies": strategies, "seeds": seeds,
            "budget": budget, "overrides": overrides or {}}
    with sessions.begin() as session:
        experiment = Experiment(name=name, grid=grid)
        experiment.runs = [new_run(c) for c in configs]
        session.add(experiment)
        session.flush()
        return experiment.id


def new_run(config: RunConfig) -> Run:
    return Run(task=config.task, model=config.model, strategy=config.strategy, seed=config.seed,
               budget=config.budget, config=config.model_dump(), config_hash=config.hash())


def request_cancel(sessions: Sessions, run_id: int) -> None:
    """A queued run is cancelled at once; a running one at its worker's next safe point."""
    with sessions.begin() as session:
        session.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.queued)
                        .values(status=RunStatus.cancelled))
        session.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.running)
                        .values(cancel_requested=True))


def retry_run(sessions: Sessions, run_id: int) -> None:
    """Queue a failed or cancelled run again; it resumes after its last finished step."""
    with sessions.begin() as session:
        result = session.execute(
            update(Run).where(Run.id == run_id, Run.status.in_([RunStatus.failed, RunStatus.cancelled]))
            .values(status=RunStatus.queued, cancel_requested=False, error=None, worker=None))
        if result.rowcount == 0:
            raise ValueError(f"run {run_id} is not failed or cancelled; only those can be retried")


def delete_run(sessions: Sessions, run_id: int, artifacts_root: Path | None = None) -> None:
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


def runs_of(sessions: Sessions, experiment_id: int) -> list[Run]:
    with sessions() as session:
        return list(session.scalars(select(Run).where(Run.experiment_id == experiment_id).order_by(Run.id)))


def live_workers(sessions: Sessions) -> list[tuple[str, int | None]]:
    """(worker id, threads of the run it executes, None when idle) of every worker with a fresh heartbeat."""
    with sessions() as session:
        cutoff = database_now(session) - timedelta(seconds=stale_after_s())
        return [(worker, threads) for worker, threads in session.execute(
            select(Worker.id, Run.cpu_threads).outerjoin(Run, Run.id == Worker.current_run_id)
            .where(Worker.heartbeat_at >= cutoff).order_by(Worker.id))]


def workers_here(sessions: Sessions) -> list[tuple[str, int | None]]:
    """The live workers whose id names this host (this process's own included once registered)."""
    host = socket.gethostname()
    return [(worker, threads) for worker, threads in live_workers(sessions) if worker.rpartition(":")[0] == host]


def worker_alive(sessions: Sessions) -> bool:
    return bool(live_workers(sessions))


def start_worker_process(db_url: str) -> subprocess.Popen:
    """A detached worker that outlives the dashboard process that started it; logs to BT_HOME.

    The URL goes through the environment, not argv, where `ps` would show its password."""
    log_file = data_dir() / "worker.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "bt_core", "worker"],
                                env={**os.environ, "BT_DATABASE_URL": db_url},
                                cwd=Path(__file__).resolve().parents[2], start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
