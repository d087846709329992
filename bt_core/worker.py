"""The worker: claims queued runs from the database and executes them, one at a time.

A job is a row: claiming is one atomic UPDATE of a queued row, so two workers never take
the same run. A heartbeat thread stamps the worker and its run; a run whose worker's stamp
is older than BT_STALE_AFTER_S is re-queued by any live worker and resumes at its first
unfinished step.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from bt_core.runner import run_to_end
from db.models import Run, RunStatus, Worker, utcnow
from db.session import data_dir

HEARTBEAT_S = 2.0


def stale_after_s() -> float:
    return float(os.environ.get("BT_STALE_AFTER_S", "20"))


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Registration:
    """A registered worker process and the run it is executing, which its heartbeat stamps."""

    worker: str
    run_id: int | None = None


def serve(sessions: sessionmaker[Session], *, once: bool = False, poll_s: float = 1.0) -> None:
    """Serve queued runs until interrupted (or, with once, until the queue is empty)."""
    with registered(sessions) as me:
        while True:
            requeue_stale(sessions)
            run_id = claim(sessions, me.worker)
            if run_id is None:
                if once:
                    return
                time.sleep(poll_s)
                continue
            execute_claimed(sessions, me, run_id)


@contextmanager
def registered(sessions: sessionmaker[Session]) -> Iterator[Registration]:
    """This process as a row of `workers`, heartbeating until the block ends."""
    me = Registration(worker_id())
    with sessions.begin() as session:
        session.merge(Worker(id=me.worker, started_at=utcnow(), heartbeat_at=utcnow()))
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(sessions, me, stop), daemon=True).start()
    try:
        yield me
    finally:
        stop.set()
        with sessions.begin() as session:
            session.execute(delete(Worker).where(Worker.id == me.worker))


def execute_claimed(sessions: sessionmaker[Session], me: Registration, run_id: int) -> RunStatus:
    """Run a claimed run to its end under this worker's heartbeat."""
    me.run_id = run_id
    try:
        return run_to_end(sessions, run_id)
    except BaseException:  # stopped (SIGTERM, Ctrl-C, a cancelled task): hand the run back at once
        _requeue(sessions, run_id, "re-queued: its worker was stopped")
        raise
    finally:
        me.run_id = None


def claim(sessions: sessionmaker[Session], me: str, run_id: int | None = None) -> int | None:
    """Take the oldest queued run (or this one, if still queued); None when there is none.

    On PostgreSQL, SKIP LOCKED lets concurrent claims pass over a row another worker is
    taking instead of queueing behind it and then finding it gone (SQLite ignores it).
    """
    target = run_id if run_id is not None else (
        select(Run.id).where(Run.status == RunStatus.queued).order_by(Run.id).limit(1)
        .with_for_update(skip_locked=True).scalar_subquery())
    with sessions.begin() as session:
        return session.scalar(
            update(Run).where(Run.id == target, Run.status == RunStatus.queued)
            .values(status=RunStatus.running, worker=me, heartbeat_at=utcnow(), cancel_requested=False,
                    started_at=utcnow(), error=None)
            .returning(Run.id))


def requeue_stale(sessions: sessionmaker[Session]) -> int:
    """Put back the running runs whose worker stopped heartbeating."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s())
    with sessions.begin() as session:
        result = session.execute(update(Run).where(Run.status == RunStatus.running, Run.heartbeat_at < cutoff)
                                 .values(status=RunStatus.queued, worker=None,
                                         message="re-queued: its worker stopped responding"))
        session.execute(delete(Worker).where(Worker.heartbeat_at < cutoff))
        return result.rowcount


def _requeue(sessions: sessionmaker[Session], run_id: int, message: str) -> None:
    with sessions.begin() as session:
        session.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.running)
                        .values(status=RunStatus.queued, worker=None, message=message))


def _heartbeat(sessions: sessionmaker[Session], me: Registration, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        now, run_id = utcnow(), me.run_id
        with sessions.begin() as session:
            session.execute(update(Worker).where(Worker.id == me.worker).values(heartbeat_at=now,
                                                                                current_run_id=run_id))
            if run_id is not None:
                session.execute(update(Run).where(Run.id == run_id, Run.worker == me.worker)
                                .values(heartbeat_at=now))


def worker_alive(sessions: sessionmaker[Session]) -> bool:
    cutoff = utcnow() - timedelta(seconds=stale_after_s())
    with sessions() as session:
        return session.scalar(select(Worker.id).where(Worker.heartbeat_at >= cutoff).limit(1)) is not None


def start_worker_process(db_url: str) -> subprocess.Popen:
    """A detached worker that outlives the dashboard process that started it; logs to BT_HOME."""
    log = data_dir() / "worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "bt_core", "worker", "--db", db_url],
                                cwd=Path(__file__).resolve().parents[1], start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
