"""Real processes for the tests: worker processes for the fault-injection tests, started as a user
would (the database URL in the environment, never on the command line), killed, frozen and resumed
by signal; dashboard servers on a free port, stopped with their process group."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlalchemy import delete, func, select

from db.models import Run, RunStatus, Worker, utcnow
from db.session import session_factory
from tests.conftest import REPO, wait_for


def start_worker(url: str, log: Path, *extra: str, stale_s: float = 4, command: tuple[str, ...] = ("worker",),
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, "BT_STALE_AFTER_S": str(stale_s), "BT_DATABASE_URL": url, **(env or {})}
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "bt_core", *command, *extra], cwd=REPO, env=environment,
                                stdout=out, stderr=subprocess.STDOUT)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def hold_sqlite_lock(path: Path, seconds: float) -> None:
    """Take SQLite's write lock from another connection, as a long writer elsewhere would."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    time.sleep(seconds)
    connection.execute("ROLLBACK")
    connection.close()


def assert_outlives_a_locked_database(process: subprocess.Popen, path: Path, log: Path) -> None:
    """An idle serving process (worker or Ray dispatcher) on SQLite file `path`, its stale window
    a few seconds, lives through a write lock held past the busy timeout and that window, and is
    seen alive after it: its worker row, deleted meanwhile as another worker's sweep would, is back."""
    sessions = session_factory(f"sqlite:///{path}")
    wait_for(lambda: _last_worker_beat(sessions), timeout=120, interval=0.2, what="the worker's registration")
    hold_sqlite_lock(path, 12)  # twice the 5 s busy timeout
    with sessions.begin() as session:
        session.execute(delete(Worker))
    released = utcnow()
    assert process.poll() is None, log.read_text()[-3000:]
    wait_for(lambda: (_last_worker_beat(sessions) or released) > released, timeout=30, interval=0.2,
             what="a heartbeat after the lock")
    assert process.poll() is None, log.read_text()[-3000:]
    assert "database is locked" in log.read_text()


def _last_worker_beat(sessions):
    with sessions() as session:
        return session.scalar(select(func.max(Worker.heartbeat_at)))


def run_row(sessions, run_id: int) -> Run:
    with sessions() as session:
        return session.get(Run, run_id)


def run_status(sessions, run_id: int) -> RunStatus:
    return run_row(sessions, run_id).status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout:.0f}s")


def stop_group(pid: int) -> None:
    """SIGTERM the process group that `pid` leads, then SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
