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


def serve(sessions: sessionmaker[Session], *, once: bool = False, poll_s: float = 1.0) -> None:
    """Serve queued runs until interrupted (or, with once, until the queue is empty)."""
    me = worker_id()
    with sessions.begin() as session:
        session.merge(Worker(id=me, started_at=utcnow(), heartbeat_at=utcnow()))
    current: list[int | None] = [None]
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(sessions, me, current, stop), daemon=True).start()
    try:
        while True:
            requeue_stale(sessions)
            run_id = claim(sessions, me)
            if run_id is None:
                if once:
                    return
                time.sleep(poll_s)
                continue
            current[0] = run_id
            try:
                run_to_end(sessions, run_id)
            except BaseException:  # stopped (SIGTERM, Ctrl-C): hand the run back at once
                _requeue(sessions, run_id, "re-queued: its worker was stopped")
                raise
            current[0] = None
    finally:
        stop.set()
        with sessions.begin() as session:
            session.execute(delete(Worker).where(Worker.id == me))


def claim(sessions: sessionmaker[Session], me: str) -> int | None:
    oldest = select(Run.id).where(Run.status == RunStatus.queued).order_by(Run.id).limit(1).scalar_subquery()
    with sessions.begin() as session:
        return session.scalar(
            update(Run).where(Run.id == oldest, Run.status == RunStatus.queued)
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


def _heartbeat(sessions: sessionmaker[Session], me: str, current: list[int | None],
               stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        now = utcnow()
        with sessions.begin() as session:
            session.execute(update(Worker).where(Worker.id == me).values(heartbeat_at=now,
                                                                         current_run_id=current[0]))
            if current[0] is not None:
                session.execute(update(Run).where(Run.id == current[0], Run.worker == me)
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
