"""Processes on one machine share its cores: a foreground `bt_core run` and a worker beside it
together use at most the machine's cores, and the dashboard starts no worker beside a live one
that holds them. Real processes, the tiny random-weight model, no BT_THREADS: the default share."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from bt_core.cores import machine_cores
from bt_core.experiments import launch_experiment
from bt_core.worker import live_workers
from db.models import Run, RunStatus, Worker
from db.session import session_factory
from tests.conftest import REPO, wait_for
from tests.processes import kill, start_worker

pytestmark = pytest.mark.integration
TINY_RUN = ("--task", "iris", "--strategy", "p -> w -> p", "--budget", "smoke", "--backend", "hf")


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("BT_THREADS", raising=False)
    monkeypatch.setenv("BT_HOME", str(tmp_path / "home"))  # this machine's core slots live here
    return f"sqlite:///{tmp_path / 'studio.sqlite'}"


def runs(sessions) -> list[Run]:
    with sessions() as session:
        return list(session.scalars(select(Run).order_by(Run.id)))


def registered_workers(sessions) -> int:
    with sessions() as session:
        return len(session.scalars(select(Worker.id)).all())


def test_a_foreground_run_and_a_worker_beside_it_share_the_cores(url, tiny_model, tmp_path):
    assert machine_cores() >= 2, "two processes can share the cores only of a machine with two or more"
    sessions = session_factory(url)
    worker = start_worker(url, tmp_path / "worker.log", stale_s=20)
    try:
        wait_for(lambda: registered_workers(sessions) == 1, 120, what="the worker to register")
        foreground = start_worker(url, tmp_path / "run.log", "--model", str(tiny_model), *TINY_RUN,
                                  stale_s=20, command=("run",))
        wait_for(lambda: [r for r in runs(sessions) if r.cpu_threads], 120, what="the foreground run to start")
        launch_experiment(sessions, "beside", ["iris"], [str(tiny_model)], ["p -> w -> p"], [1], "smoke",
                          {"backend": "hf"})
        assert foreground.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-3000:]
        wait_for(lambda: all(r.status == RunStatus.done for r in runs(sessions)) and len(runs(sessions)) == 2,
                 300, what="the worker's run to finish")
    finally:
        kill(worker)
    alone, beside = runs(sessions)
    assert alone.worker != beside.worker
    assert beside.started_at < alone.finished_at, "the two runs never ran at the same time"
    assert alone.cpu_threads + beside.cpu_threads <= machine_cores()
    assert alone.cpu_threads == beside.cpu_threads == machine_cores() // 2


def test_the_dashboard_starts_no_worker_beside_one_that_holds_the_cores(url, tiny_model, tmp_path, monkeypatch):
    sessions = session_factory(url)
    launch_experiment(sessions, "busy", ["iris"], [str(tiny_model)], ["p -> w -> p"], [0, 1, 2, 3, 4], "default",
                      {"backend": "hf"})  # enough work to keep it busy while the dashboard looks
    worker = start_worker(url, tmp_path / "worker.log", stale_s=20)
    try:  # its heartbeat names the run it executes, and so its share, to the dashboard
        wait_for(lambda: live_workers(sessions) == [(worker_name(worker), machine_cores())], 120,
                 what="the worker to take a run on every core (alone on this machine)")
        monkeypatch.setenv("BT_DATABASE_URL", url)
        monkeypatch.setenv("BT_AUTOSTART_WORKER", "1")
        app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
        assert not app.exception
        sidebar = "\n".join(e.value for kind in ("markdown", "caption") for e in getattr(app.sidebar, kind))
        assert "Worker running" in sidebar
        assert f"1 alive on this machine (pid: share) · {worker.pid}: {machine_cores()} of {machine_cores()} cores" \
            in sidebar
        assert started_workers() == [worker.pid] and registered_workers(sessions) == 1
    finally:
        kill(worker)


def worker_name(process) -> str:
    return f"{socket.gethostname()}:{process.pid}"


def started_workers() -> list[int]:
    """This test process's child processes running `bt_core worker` (the dashboard's would be one)."""
    children = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == os.getpid() and b"bt_core" in command and b"worker" in command:
            children.append(int(entry.name))
    return children
