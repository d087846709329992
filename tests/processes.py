"""Real worker processes for the fault-injection tests: started as a user would (the database URL
in the environment, never on the command line), killed, frozen and resumed by signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
