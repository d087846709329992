"""Real worker processes: SIGKILL during a w step resumes at that step; cancel stops a run."""

from __future__ import annotations

import time

import pytest

from bt_core.serve.queue import launch_experiment, request_cancel
from db.models import Run, RunStatus, StepStatus
from db.session import session_factory
from tests.conftest import wait_for
from tests.processes import kill, run_status, start_worker
from tests.resume import assert_resumed_at_the_w_step, step_rows

pytestmark = pytest.mark.integration


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
        kill(worker)
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

        wait_for(lambda: run_status(sessions, 1) == RunStatus.cancelled, timeout=30, interval=0.2,
                 what="the run to be cancelled")
        assert time.monotonic() - asked < 10
        assert worker.wait(timeout=60) == 0  # the worker itself goes on (here: exits, queue empty)
    finally:
        if worker.poll() is None:
            worker.kill()


def test_the_dashboards_worker_gets_no_password_on_its_command_line(postgres_url):
    """`ps` shows every user's command lines: the URL travels in the worker's environment."""
    from sqlalchemy.engine import make_url

    from bt_core.serve.queue import start_worker_process

    url = make_url(postgres_url)
    if not url.password:  # a trust-auth test server ignores it, which is all this test needs
        url = url.set(password="pw-visible-to-ps")
    worker = start_worker_process(url.render_as_string(hide_password=False))
    try:
        sessions = session_factory(postgres_url)
        wait_for(lambda: worker_rows(sessions), timeout=120, interval=0.5, what="the worker to register")
        command_line = open(f"/proc/{worker.pid}/cmdline", "rb").read().decode()
        assert "bt_core" in command_line and url.password not in command_line
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def worker_rows(sessions):
    from sqlalchemy import select

    from db.models import Worker

    with sessions() as session:
        return session.scalars(select(Worker.id)).all()


def test_the_dashboard_says_why_the_worker_it_started_stopped(tmp_path, monkeypatch):
    """A worker that exits at once (here: a bad BT_THREADS, which the dashboard itself never reads)
    is named in the sidebar with its exit code and the last line of its log, not respawned silently."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    monkeypatch.setenv("BT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BT_DATABASE_URL", f"sqlite:///{tmp_path / 'studio.sqlite'}")
    monkeypatch.setenv("BT_AUTOSTART_WORKER", "1")
    monkeypatch.setenv("BT_THREADS", "0")
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    log = tmp_path / "home" / "worker.log"
    wait_for(lambda: log.is_file() and "BT_THREADS" in log.read_text(), timeout=120, what="the worker to stop")
    time.sleep(1)  # its exit code, after its last line
    app.run()
    errors = [e.value for e in app.sidebar.error]
    assert errors == ["The worker this dashboard started stopped: exit code 2: error: threads (--threads or "
                      "BT_THREADS) must be a whole number, at least 1; got '0' (full log: " + str(log) + ")"]
