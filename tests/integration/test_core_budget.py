"""Processes on one machine share its cores: a foreground `bt_core run` and a worker beside it
together use at most the machine's cores, and the dashboard starts no worker beside a live one
that holds them. Real processes, the tiny random-weight model, no BT_THREADS: the default share."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from bt_core.serve.cores import machine_cores
from bt_core.serve.queue import launch_experiment, live_workers
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
        together = []  # the threads of both runs, whenever both were running
        while foreground.poll() is None:
            now = executing(sessions)
            assert sum(threads for _, threads in now) <= machine_cores(), now
            together += [now] if len(now) == 2 else []
            time.sleep(0.2)
        assert foreground.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
        wait_for(lambda: all(r.status == RunStatus.done for r in runs(sessions)) and len(runs(sessions)) == 2,
                 300, what="the worker's run to finish")
    finally:
        kill(worker)
    alone, beside = runs(sessions)
    assert alone.worker != beside.worker
    assert together, "the two runs never ran at the same time"
    assert [threads for _, threads in together[-1]] == [machine_cores() // 2] * 2


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


def test_a_busy_worker_gives_cores_to_a_newcomer_and_takes_them_back(url, tiny_model, tmp_path):
    """The first worker took every core for its run; a second worker registers while that run is
    still going, and gets its share without waiting for the run to end; once it is gone, the
    first worker's run gets the cores back."""
    cores = machine_cores()
    assert cores >= 2, "a share can be given back only on a machine with two or more cores"
    sessions = session_factory(url)
    launch_experiment(sessions, "busy", ["iris"], [str(tiny_model)], ["p -> w -> p"], [0, 1], "paper",
                      {"backend": "hf"})  # the paper's sizes: a run long enough to outlast a worker's start
    first = start_worker(url, tmp_path / "first.log", stale_s=10)
    second = None
    try:
        wait_for(lambda: live_workers(sessions) == [(worker_name(first), cores)], 120,
                 what="the first worker to take a run on every core")
        [(busy_run, _)] = executing(sessions)
        second = start_worker(url, tmp_path / "second.log", stale_s=10)
        halves = sorted([(worker_name(first), cores // 2), (worker_name(second), cores // 2)])
        wait_for(lambda: live_workers(sessions) == halves, 90, what="both workers to compute on half the cores")
        assert busy_run in dict(executing(sessions)), "the first worker's run ended before it gave cores back"
        assert sum(threads for _, threads in executing(sessions)) <= cores
        kill(second)
        wait_for(lambda: live_workers(sessions) == [(worker_name(first), cores)], 90,
                 what="the first worker to take the freed cores back")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                kill(process)


def executing(sessions) -> list[tuple[int, int]]:
    """(run id, threads) of every running run."""
    with sessions() as session:
        return [(run.id, run.cpu_threads) for run in session.scalars(
            select(Run).where(Run.status == RunStatus.running).order_by(Run.id))]
