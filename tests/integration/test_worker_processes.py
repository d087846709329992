"""Real worker processes: SIGKILL during a w step resumes at that step; cancel stops a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bt_core.experiments import launch_experiment, request_cancel
from db.models import Run, RunStatus, StepStatus
from db.session import session_factory
from tests.conftest import REPO, wait_for
from tests.resume import assert_resumed_at_the_w_step, step_rows

pytestmark = pytest.mark.integration


def start_worker(url: str, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "BT_STALE_AFTER_S": "4"}
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "bt_core", "--db", url, "worker", *extra], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def run_status(sessions, run_id):
    with sessions() as session:
        return session.get(Run, run_id).status


def test_sigkill_during_w_resumes_at_that_step(tmp_path):
    url = f"sqlite:///{tmp_path / 'resume.sqlite'}"
    sessions = session_factory(url)
    launch_experiment(sessions, "resume", ["iris"], ["smollm2-135m"], ["p -> w"], [0], "smoke")
    log = tmp_path / "worker.log"
    worker = start_worker(url, log)
    try:
        def in_w_step():
            rows = step_rows(sessions, 1)
            return len(rows) == 3 and rows[2][2] == StepStatus.running
        wait_for(in_w_step, timeout=900, interval=0.5, what="the w step to start")
        time.sleep(3)  # into its trace collection or LoRA training
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    before = step_rows(sessions, 1)
    assert [r[2] for r in before] == [StepStatus.done, StepStatus.done, StepStatus.running]
    with sessions() as session:
        assert session.get(Run, 1).status == RunStatus.running  # nobody has noticed yet

    second = start_worker(url, log)  # notices the stale heartbeat, re-queues and resumes the run
    try:
        wait_for(lambda: run_status(sessions, 1) in (RunStatus.done, RunStatus.failed), timeout=900,
                 what="the resumed run to finish")
    finally:
        second.terminate()
        second.wait()
    assert_resumed_at_the_w_step(sessions, 1, before)
    with sessions() as session:
        run = session.get(Run, 1)
        assert run.status == RunStatus.done and run.test_score is not None


def test_cancel_stops_a_running_run_within_seconds(tmp_path):
    url = f"sqlite:///{tmp_path / 'cancel.sqlite'}"
    sessions = session_factory(url)
    launch_experiment(sessions, "cancel", ["iris"], ["smollm2-135m"], ["p -> w -> p"], [1], "smoke")
    worker = start_worker(url, tmp_path / "worker.log", "--once")
    try:
        wait_for(lambda: len(step_rows(sessions, 1)) >= 2, timeout=600, interval=0.5, what="the p step")
        asked = time.monotonic()
        request_cancel(sessions, 1)

        wait_for(lambda: run_status(sessions, 1) == RunStatus.cancelled, timeout=30, interval=0.2, what="the run to be cancelled")
        assert time.monotonic() - asked < 10
        assert worker.wait(timeout=60) == 0  # the worker itself goes on (here: exits, queue empty)
    finally:
        if worker.poll() is None:
            worker.kill()
