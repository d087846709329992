"""Real processes for the tests: worker processes for the fault-injection tests, started as a user
would (the database URL in the environment, never on the command line), killed, frozen and resumed
by signal; dashboard servers on a free port, stopped with their process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from db.models import Run, RunStatus
from tests.conftest import REPO


def start_worker(url: str, log: Path, *extra: str, stale_s: float = 4, command: tuple[str, ...] = ("worker",),
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, "BT_STALE_AFTER_S": str(stale_s), "BT_DATABASE_URL": url, **(env or {})}
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "bt_core", *command, *extra], cwd=REPO, env=environment,
                                stdout=out, stderr=subprocess.STDOUT)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


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
