"""The Ray executor for real: a local Ray cluster (2 CPUs, no dashboard), the embedded model and
PostgreSQL as the one database. A grid's runs finish with their traces; a Ray worker process
killed mid-step leaves its run to resume at that very step, with nothing recorded twice.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bt_core.serve.queue import launch_experiment
from db.models import Run, RunStatus, StepStatus, Trace, Worker
from db.session import session_factory
from tests.conftest import REPO, bt, wait_for
from tests.processes import assert_outlives_a_locked_database
from tests.raycluster import Cluster, ray_cluster
from tests.resume import assert_resumed_at_the_w_step, duplicated_traces, step_rows

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with ray_cluster() as running:
        yield running


def serve(cluster: Cluster, url: str, log: Path, *extra: str) -> subprocess.Popen:
    """The URL goes in the environment: on a command line, any local user could read its password."""
    env = {**os.environ, **cluster.env, "BT_STALE_AFTER_S": "4", "BT_DATABASE_URL": url}
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "bt_core", "worker", "--executor", "ray",
                                 "--address", cluster.address, *extra],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_a_grid_runs_as_ray_tasks_into_postgresql(cluster, postgres_url):
    sessions = session_factory(postgres_url)
    launch_experiment(sessions, "ray grid", ["iris"], ["smollm2-135m"], ["p", "w"], [0], "smoke")
    result = bt("worker", "--executor", "ray", "--address", cluster.address, "--once",
                env={**cluster.env, "BT_DATABASE_URL": postgres_url}, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run 1: done" in result.stdout and "run 2: done" in result.stdout
    with sessions() as session:
        runs = session.scalars(select(Run).order_by(Run.id)).all()
        assert [r.status for r in runs] == [RunStatus.done, RunStatus.done]
        assert all(r.test_score is not None and r.worker.count(":") == 1 for r in runs)  # host:pid of its Ray worker
        for run in runs:
            assert [s.status for s in run.steps] == [StepStatus.done, StepStatus.done]
            assert session.scalar(select(func.count(Trace.id)).where(Trace.run_id == run.id)) > 0
        assert session.scalar(select(func.count()).select_from(Worker)) == 0  # every process deregistered
    assert duplicated_traces(sessions, 1) == duplicated_traces(sessions, 2) == []


def test_a_killed_ray_worker_resumes_its_run_at_the_unfinished_step(cluster, postgres_url, tmp_path):
    sessions = session_factory(postgres_url)
    launch_experiment(sessions, "ray resume", ["iris"], ["smollm2-135m"], ["p -> w"], [0], "smoke")
    log = tmp_path / "driver.log"
    driver = serve(cluster, postgres_url, log, "--once")
    try:
        wait_for(lambda: [s[2] for s in step_rows(sessions, 1)] == [StepStatus.done, StepStatus.done,
                                                                    StepStatus.running],
                 timeout=900, interval=0.5, what="the w step to start")
        time.sleep(3)  # into its trace collection or LoRA training
        with sessions() as session:
            killed = session.get(Run, 1).worker
        os.kill(int(killed.rsplit(":", 1)[1]), signal.SIGKILL)  # the Ray worker process, not the driver
        before = step_rows(sessions, 1)
        assert driver.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
    assert_resumed_at_the_w_step(sessions, 1, before)
    with sessions() as session:
        run = session.get(Run, 1)
        assert run.status == RunStatus.done and run.test_score is not None and run.worker != killed
    assert "run 1: its Ray task died" in log.read_text()



def test_an_idle_dispatcher_outlives_a_database_locked_past_the_stale_window(cluster, tmp_path):
    path, log = tmp_path / "idle.sqlite", tmp_path / "driver.log"
    session_factory(f"sqlite:///{path}")  # the schema, before the driver polls it
    driver = serve(cluster, f"sqlite:///{path}", log)
    try:
        assert_outlives_a_locked_database(driver, path, log)
    finally:
        driver.kill()
        driver.wait()


def test_a_run_whose_tasks_cannot_reach_the_database_fails_after_a_few_tries(cluster, postgres_url):
    """The nodes know the server's password, not the one of the role this driver connects as, so
    every task fails before it can claim its run: the driver fails the run with the task's error
    after START_TRIES tasks, where it used to re-submit one every second for ever."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from bt_core.serve.ray_executor import START_TRIES

    role, password = f"bt_ray_stranger_{secrets.token_hex(4)}", secrets.token_hex(8)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        conn.execute(text(f"GRANT ALL ON SCHEMA public TO {role}"))
    url = make_url(postgres_url).set(username=role, password=password).render_as_string(hide_password=False)
    try:
        sessions = session_factory(url)
        launch_experiment(sessions, "unreachable", ["iris"], ["smollm2-135m"], ["p"], [0], "smoke")
        result = bt("worker", "--executor", "ray", "--address", cluster.address, "--once",
                    env={**cluster.env, "BT_DATABASE_URL": url}, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        with sessions() as session:
            run = session.get(Run, 1)
        sessions.kw["bind"].dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))  # its tables here, so the role can go
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()
    assert run.status == RunStatus.failed and run.attempt == 0
    assert run.error.startswith(f"its Ray task failed {START_TRIES} times before it could claim the run: ")
    assert "password authentication failed" in run.error
    assert result.stdout.count("its Ray task failed before it could claim the run") == START_TRIES - 1
