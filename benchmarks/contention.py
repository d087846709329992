"""The run queue under contention on one database: K worker processes serve queued runs while a
dashboard reads, and nothing may be lost, duplicated or fail on the way.

Each phase (database x workers) starts from a fresh database (a SQLite file, or a throwaway
database on a PostgreSQL server, dropped after) and a fresh BT_HOME, queues `--runs` smoke
runs (Iris, p -> w -> p, distinct seeds) of a tiny random-weight model (tests/tiny_model.py),
so the LM is cheap and the database is what the workers share, and starts K
`python -m bt_core worker` processes (the URL in BT_DATABASE_URL, never on argv, as it may hold a
password; each worker with its own log and LM-cache file, so the only database they contend on
is the run database; no BT_THREADS or OMP_NUM_THREADS, so each takes the share of the machine's
cores that bt_core/serve/cores.py gives it, as users run them). A reader thread meanwhile refreshes
the Runs and Traces pages' queries (db/queries.py) twice a second, as an open dashboard tab does.
After `--seconds` (or once the queue is empty) everything stops and the phase reports:

- runs done and failed, and runs done per minute (worker start-up included);
- the reader's refreshes, their median and worst latency, and the database errors it saw;
- worker log lines with "OperationalError", "database is locked" or "Traceback" (written
  before the stop, so shutdown noise is not counted), and retries: lines with "transient
  database error", which the worker logs when it retries a transaction;
- rows lost / duplicated in the runs that ended done: each has exactly one done step per
  strategy step plus step 0, every step scored every test example, every score has its LM-call
  trace, and no (program, split, example[, position]) key of example_scores or traces repeats
  more often than that program was evaluated on that split (a p step legitimately evaluates a
  candidate twice when two candidates come out identical; the recorder stores them as one
  program, so exact duplicates cannot be told from that, only partial ones).

The test split does not move with the seed, so a worker's later runs find their zero-shot test
calls in its LM cache; their rows are written all the same.

    python benchmarks/contention.py [--workers 1 3] [--db sqlite postgresql] [--seconds 300]
        [--runs 1000] [--postgres-url URL]   # default: $BT_TEST_POSTGRES_URL (scripts/postgres.sh)
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import SQLAlchemyError

from bt_core.serve.queue import MAX_SEEDS, launch_experiment
from bt_core.strategy import parse_strategy
from bt_core.tasks import get_task
from db import queries
from db.models import ExampleScore, Run, RunStatus, Step, StepStatus, Trace
from db.session import Sessions, database_url, get_engine, session_factory
from tests.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]

STRATEGY = "p -> w -> p"
REFRESH_S = 0.5
LOG_ERRORS = ("OperationalError", "database is locked", "Traceback")
RETRY = "transient database error"


@dataclass
class Phase:
    database: str
    workers: int
    done: int = 0
    run_errors: list[str] = field(default_factory=list)  # of the runs that failed
    minutes: float = 0.0
    refresh_s: list[float] = field(default_factory=list)
    reader_errors: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    retries: int = 0
    lost: int = 0
    duplicated: int = 0


class DashboardReader(threading.Thread):
    """Refreshes what the Runs and Traces pages show, twice a second, counting database errors."""

    def __init__(self, sessions: Sessions) -> None:
        super().__init__(daemon=True)
        self.sessions, self.stop = sessions, threading.Event()
        self.seconds: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                refresh(self.sessions)
            except SQLAlchemyError as exc:
                self.errors.append(" ".join(str(exc).split())[:200])
            self.seconds.append(time.perf_counter() - start)
            self.stop.wait(max(0.0, REFRESH_S - self.seconds[-1]))


def refresh(db: Sessions) -> None:
    """One refresh of the app's sidebar, the Runs page (table and the newest run's detail) and
    the Traces page (the newest scored run's last step, its first test example's LM calls)."""
    queries.status_counts(db)
    queries.count_runs(db)
    runs = queries.runs_page(db, limit=50)
    if runs.empty:
        return
    run_id = int(runs["id"].iloc[0])
    queries.run_info(db, run_id)
    queries.steps(db, run_id)
    queries.detail_means(db, run_id, "test")
    queries.trainings(db, run_id)
    queries.programs(db, run_id)
    queries.final_step(db, run_id)
    for scored in queries.runs_page(db, statuses=["done", "running", "failed", "cancelled"], limit=500)["id"]:
        views = queries.evaluated_steps(db, int(scored), "test")
        if views:
            program_id = views[-1]["program_id"]
            queries.example_scores(db, program_id, "test")
            queries.example_result(db, program_id, "test", 0)
            queries.traces(db, program_id, "test", 0)
            return


@contextmanager
def phase_database(kind: str, folder: Path, postgres_url: str | None) -> Iterator[str]:
    """A fresh SQLite file, or a new database on the PostgreSQL server, dropped after the phase."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'studio.sqlite'}"
        return
    if not postgres_url:
        raise SystemExit("--db postgresql needs --postgres-url or BT_TEST_POSTGRES_URL "
                         "(export BT_TEST_POSTGRES_URL=\"$(bash scripts/postgres.sh)\")")
    admin = create_engine(database_url(postgres_url), isolation_level="AUTOCOMMIT")
    name = f"bt_contention_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_worker(url: str, home: Path, index: int) -> subprocess.Popen:
    env = {**os.environ, "BT_DATABASE_URL": url, "BT_HOME": str(home),
           "BT_LM_CACHE": str(home / f"lm_cache-{index}.sqlite"), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    for setting in ("BT_STALE_AFTER_S", "BT_THREADS", "OMP_NUM_THREADS"):  # the defaults, as users run it
        env.pop(setting, None)
    with open(home / f"worker-{index}.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "bt_core", "worker"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def stop_workers(workers: list[subprocess.Popen]) -> None:
    """SIGTERM (a worker hands its run back and deregisters), SIGKILL after a minute."""
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def queue_open(db: Sessions) -> bool:
    try:
        return queries.count_runs(db, statuses=["queued", "running"]) > 0
    except SQLAlchemyError:  # the reader counts database errors; here a busy database just means "not yet"
        return True


def log_lines(path: Path, size: int) -> list[str]:
    with open(path, "rb") as log:
        return log.read(size).decode(errors="replace").splitlines()


def audit(db: Sessions, steps_per_run: int, test_size: int) -> tuple[int, int]:
    """(rows lost, rows duplicated) over the runs that ended done; see the module docstring."""
    done = select(Run.id).where(Run.status == RunStatus.done)
    with db() as session:
        runs = session.scalars(done).all()
        steps = session.execute(select(Step.id, Step.run_id, Step.index).where(Step.run_id.in_(done),
                                                                               Step.status == StepStatus.done)).all()
        scores = Counter(session.execute(select(ExampleScore.step_id, ExampleScore.program_id, ExampleScore.split,
                                                ExampleScore.example_index).where(ExampleScore.run_id.in_(done))))
        traces = Counter(session.execute(select(Trace.program_id, Trace.split, Trace.example_index, Trace.position)
                                         .where(Trace.run_id.in_(done))))
    present = {(run, index) for _, run, index in steps} & {(run, i) for run in runs for i in range(steps_per_run)}
    lost, duplicated = len(runs) * steps_per_run - len(present), len(steps) - len(present)
    evaluations: dict[tuple[int, str], int] = {}  # (program, split) -> times evaluated: its rarest example's count
    scored: Counter[tuple[int, str, int]] = Counter()
    tested: Counter[int] = Counter()
    for (step_id, program_id, split, example), count in scores.items():
        key = (program_id, split)
        evaluations[key] = min(evaluations.get(key, count), count)
        scored[(program_id, split, example)] += count
        tested[step_id] += split == "test"
    duplicated += sum(count - evaluations[(p, s)] for (p, s, _), count in scored.items())
    lost += sum(max(0, test_size - tested[step_id]) for step_id, _, _ in steps)
    lost += sum(max(0, evaluations[(p, s)] - traces[(p, s, e, 0)]) for p, s, e in scored)
    duplicated += sum(max(0, count - evaluations.get((p, s), count)) for (p, s, _, _), count in traces.items())
    return lost, duplicated


def run_phase(kind: str, workers: int, model: Path, args: argparse.Namespace) -> Phase:
    phase = Phase(kind, workers)
    with tempfile.TemporaryDirectory(prefix="bt-contention-") as folder, \
            phase_database(kind, Path(folder), args.postgres_url) as url:
        home = Path(folder)
        db = session_factory(url)
        for first in range(0, args.runs, MAX_SEEDS):  # one launch takes at most MAX_SEEDS seeds
            launch_experiment(db, "contention", ["iris"], [str(model)], [STRATEGY],
                              list(range(first, min(first + MAX_SEEDS, args.runs))), "smoke", {"backend": "hf"})
        reader, processes = DashboardReader(db), []
        reader.start()
        start = time.monotonic()
        try:
            processes += [start_worker(url, home, i) for i in range(workers)]
            while time.monotonic() - start < args.seconds and queue_open(db):
                time.sleep(2)
            phase.minutes = (time.monotonic() - start) / 60
            phase.done = queries.count_runs(db, statuses=["done"])
            logs = {path: path.stat().st_size for path in home.glob("worker-*.log")}  # before the stop
        finally:
            reader.stop.set()
            reader.join()
            stop_workers(processes)
        with db() as session:
            phase.run_errors = list(session.scalars(select(Run.error).where(Run.status == RunStatus.failed)))
        phase.refresh_s, phase.reader_errors = reader.seconds, reader.errors
        for path, size in logs.items():
            lines = log_lines(path, size)
            phase.log_errors += [line for line in lines if any(e in line for e in LOG_ERRORS)]
            phase.retries += sum(RETRY in line for line in lines)
        phase.lost, phase.duplicated = audit(db, len(parse_strategy(STRATEGY)) + 1,
                                             get_task("iris").sizes["smoke"].test)
        get_engine(url).dispose()
    return phase


def table(phases: list[Phase]) -> str:
    header = ("database", "workers", "done", "failed", "runs/min", "refreshes", "refresh ms p50/max",
              "reader db errors", "worker log error lines", "retries", "rows lost", "rows duplicated")
    rows = [header] + [
        (p.database, p.workers, p.done, len(p.run_errors), f"{p.done / p.minutes:.2f}", len(p.refresh_s),
         f"{1000 * statistics.median(p.refresh_s):.0f}/{1000 * max(p.refresh_s):.0f}" if p.refresh_s else "-",
         len(p.reader_errors), len(p.log_errors), p.retries, p.lost, p.duplicated) for p in phases]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=float, default=300, help="per phase")
    parser.add_argument("--runs", type=int, default=1000, help="queued per phase, more than the phase can finish")
    parser.add_argument("--postgres-url", default=os.environ.get("BT_TEST_POSTGRES_URL"),
                        help="admin URL of a server to create the throwaway databases on")
    args = parser.parse_args()
    print(f"{args.runs} queued smoke runs per phase (iris, {STRATEGY}, tiny random model), {args.seconds:.0f} s "
          f"per phase, {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}", flush=True)
    phases = []
    with tempfile.TemporaryDirectory(prefix="bt-contention-model-") as folder:
        model = build_tiny_model(Path(folder) / "tiny")
        for kind in args.db:
            for workers in args.workers:
                phases.append(run_phase(kind, workers, model, args))
                print(f"  {kind} x {workers} worker(s): {phases[-1].done} done", flush=True)
    print(table(phases))
    for p in phases:
        for what, errors in (("run", p.run_errors), ("reader", p.reader_errors), ("worker log", p.log_errors)):
            if errors:
                print(f"{p.database} x {p.workers}, first {what} error: {str(errors[0])[:200]}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
