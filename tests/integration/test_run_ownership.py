"""A run executes exactly once whatever happens to its worker, shown with real worker processes,
the real embedded model and real databases: random SIGKILLs, a worker frozen past the stale
window and then resumed, a database locked under a running worker, a killed `bt_core run`, and
a cancel asked while no worker is alive."""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bt_core.serve.queue import launch_experiment, request_cancel
from db.models import ExampleScore, Run, RunStatus, Step, StepStatus, Training
from db.session import session_factory
from tests.conftest import wait_for
from tests.processes import assert_outlives_a_locked_database, hold_sqlite_lock, kill, run_row, run_status, start_worker
from tests.resume import duplicated_traces, step_rows

pytestmark = pytest.mark.integration
SMOKE_P_W_P = "p -> w -> p"


def running_step(sessions, run_id: int) -> int | None:
    rows = step_rows(sessions, run_id)
    return rows[-1][0] if rows and rows[-1][2] == StepStatus.running else None


def duplicated_scores(sessions, run_id: int) -> list:
    with sessions() as session:
        return session.execute(
            select(ExampleScore.program_id, ExampleScore.split, ExampleScore.example_index, func.count())
            .where(ExampleScore.run_id == run_id)
            .group_by(ExampleScore.program_id, ExampleScore.split, ExampleScore.example_index)
            .having(func.count() > 1)).all()


def assert_executed_once(sessions, run_id: int, steps: int) -> list[Step]:
    """Done, one finished row per step, no trace or score twice; returns the steps."""
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run.status == RunStatus.done, run.error
        rows = session.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.index)).all()
    assert [(s.index, s.status) for s in rows] == [(i, StepStatus.done) for i in range(steps)]
    assert duplicated_traces(sessions, run_id) == [] and duplicated_scores(sessions, run_id) == []
    return rows


def assert_adapter_intact(path: str | None) -> None:
    assert path is not None
    folder = Path(path)
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").stat().st_size > 0
    assert not folder.name.count(".partial-")


def test_random_sigkills_leave_one_run_with_the_uninterrupted_result(tmp_path):
    """At least 5 SIGKILLs at seeded random moments, some inside the w step, each followed by a
    new worker; then the same config again without a kill, on the same LM cache, must agree."""
    url = f"sqlite:///{tmp_path / 'kills.sqlite'}"
    sessions = session_factory(url)
    env = {"BT_LM_CACHE": str(tmp_path / "lm_cache.sqlite")}  # cold: the killed run does the real work
    launch_experiment(sessions, "killed", ["iris"], ["smollm2-135m"], [SMOKE_P_W_P], [0], "smoke")
    rng = random.Random(15)
    log = tmp_path / "workers.log"
    kills_in = []
    for target in (0, 1, 2, 2, 3):  # kill once this worker runs this step, after a random delay
        worker = start_worker(url, log, stale_s=3, env=env)
        mine = f":{worker.pid}"
        try:
            wait_for(lambda: run_status(sessions, 1) == RunStatus.done or (
                (run_row(sessions, 1).worker or "").endswith(mine) and (running_step(sessions, 1) or -1) >= target),
                timeout=900, interval=0.2, what=f"step {target} to run")
            time.sleep(rng.uniform(0.5, 4.0))
        finally:
            at = running_step(sessions, 1)
            kill(worker)
        if run_status(sessions, 1) == RunStatus.done:
            break
        kills_in.append(at)
        time.sleep(3.5)  # past the stale window, so the next worker re-queues and takes the run at once
    worker = start_worker(url, log, "--once", stale_s=3, env=env)
    assert worker.wait(timeout=900) == 0, log.read_text()[-3000:]
    assert len(kills_in) >= 5 and kills_in.count(2) >= 2, kills_in
    killed = assert_executed_once(sessions, 1, 4)
    assert run_row(sessions, 1).attempt == len(kills_in) + 1  # one claim per worker that got to run it
    assert_adapter_intact(killed[2].adapter_path)

    launch_experiment(sessions, "uninterrupted", ["iris"], ["smollm2-135m"], [SMOKE_P_W_P], [0], "smoke")
    worker = start_worker(url, log, "--once", stale_s=3, env=env)
    assert worker.wait(timeout=900) == 0, log.read_text()[-3000:]
    clean = assert_executed_once(sessions, 2, 4)
    assert [(s.program_state, s.val_score, s.test_score) for s in killed] == \
           [(s.program_state, s.val_score, s.test_score) for s in clean]


def test_a_frozen_worker_resumed_after_a_takeover_writes_nothing_more(postgres_url, tmp_path):
    """SIGSTOP in the w step past the stale window; a second worker takes the run; SIGCONT: the
    first finds its lease gone and stops; the run completes once with an intact adapter."""
    sessions = session_factory(postgres_url)
    launch_experiment(sessions, "frozen", ["iris"], ["smollm2-135m"], ["p -> w"], [0], "smoke")
    first = start_worker(postgres_url, tmp_path / "first.log", "--once")
    second = None
    try:
        wait_for(lambda: running_step(sessions, 1) == 2, timeout=900, interval=0.2, what="the w step")
        time.sleep(1.5)
        first.send_signal(signal.SIGSTOP)
        frozen_at = step_rows(sessions, 1)
        time.sleep(6)  # past the 4 s stale window
        second = start_worker(postgres_url, tmp_path / "second.log", "--once")
        wait_for(lambda: run_row(sessions, 1).attempt == 2 and running_step(sessions, 1) == 2, timeout=120,
                 interval=0.2, what="the second worker to redo the w step")
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=120) == 0  # stopped the run, found the queue empty, exited
        assert second.wait(timeout=900) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                kill(process)
    assert "lost" in (tmp_path / "first.log").read_text()
    steps = assert_executed_once(sessions, 1, 3)
    assert [(s.index, s.id) for s in steps[:2]] == [(r[0], r[1]) for r in frozen_at[:2]]  # kept, not redone
    with sessions() as session:
        run = session.get(Run, 1)
        trainings = session.scalars(select(Training).where(Training.step_id == steps[2].id)).all()
    assert run.attempt == 2 and run.worker.endswith(f":{second.pid}")
    assert len(trainings) == 1 and trainings[0].adapter_path == steps[2].adapter_path
    assert "/attempt-2/" in steps[2].adapter_path
    assert_adapter_intact(steps[2].adapter_path)


def test_a_database_locked_for_less_than_the_stale_window_is_waited_out(tmp_path):
    path = tmp_path / "locked.sqlite"
    sessions = session_factory(f"sqlite:///{path}")
    launch_experiment(sessions, "locked", ["iris"], ["smollm2-135m"], ["p"], [0], "smoke")
    log = tmp_path / "worker.log"
    worker = start_worker(f"sqlite:///{path}", log, "--once", stale_s=20,
                          env={"BT_LM_CACHE": str(tmp_path / "lm_cache.sqlite")})  # the run lasts past the lock
    try:
        wait_for(lambda: running_step(sessions, 1) is not None, timeout=600, interval=0.2, what="a step")
        hold_sqlite_lock(path, 9)  # past the 5 s busy timeout: writes and heartbeats fail, then retry
        assert worker.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            kill(worker)
    # the lock was felt (by a write that retried, or by a heartbeat that failed and went on) ...
    assert "database is locked" in log.read_text()
    assert_executed_once(sessions, 1, 2)
    assert run_row(sessions, 1).attempt == 1  # ... and the run was never taken over


def test_a_database_locked_past_the_stale_window_hands_the_run_over_cleanly(tmp_path):
    path = tmp_path / "locked.sqlite"
    url = f"sqlite:///{path}"
    sessions = session_factory(url)
    launch_experiment(sessions, "locked", ["iris"], ["smollm2-135m"], ["p"], [0], "smoke")
    cold = {"BT_LM_CACHE": str(tmp_path / "lm_cache.sqlite")}  # the run lasts past the lock
    first = start_worker(url, tmp_path / "first.log", "--once", stale_s=6, env=cold)
    second = None
    try:
        wait_for(lambda: running_step(sessions, 1) is not None, timeout=600, interval=0.2, what="a step")
        second = start_worker(url, tmp_path / "second.log", "--once", stale_s=6, env=cold)
        time.sleep(5)  # the second worker is up and polling
        hold_sqlite_lock(path, 16)  # the first worker's heartbeat is refused for longer than 6 s
        assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-3000:]
        assert second.wait(timeout=900) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                kill(process)
    # whichever notices first gives the attempt up: the heartbeat thread, or the runner's own write
    lost = re.search(r"run 1 attempt 1 lost: (.*)", (tmp_path / "first.log").read_text())
    assert lost and lost.group(1).startswith(("no heartbeat reached the database", "the database refused writes"))
    assert_executed_once(sessions, 1, 2)
    assert run_row(sessions, 1).attempt == 2  # taken again by whichever worker claimed it first


def test_an_idle_worker_outlives_a_database_locked_past_the_stale_window(tmp_path):
    """The serving loop's own writes (re-queue sweep, claim) meet the lock too: a worker waits the
    outage out and serves on, as a queue's consumer does, instead of dying with the database."""
    path, log = tmp_path / "idle.sqlite", tmp_path / "worker.log"
    session_factory(f"sqlite:///{path}")  # the schema, before the worker polls it
    worker = start_worker(f"sqlite:///{path}", log, stale_s=1)
    try:
        assert_outlives_a_locked_database(worker, path, log)
    finally:
        kill(worker)


def test_a_killed_cli_run_is_requeued_and_finished_by_a_worker(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    sessions = session_factory(url)
    cli = start_worker(url, tmp_path / "cli.log", "--task", "iris", "--strategy", "p", "--budget", "smoke",
                       command=("run",))
    try:
        wait_for(lambda: len(step_rows(sessions, 1)) >= 2, timeout=600, interval=0.2, what="the p step")
    finally:
        kill(cli)
    assert run_status(sessions, 1) == RunStatus.running  # until its heartbeat is stale
    time.sleep(5)  # past the 4 s stale window
    worker = start_worker(url, tmp_path / "worker.log", "--once")
    assert worker.wait(timeout=900) == 0
    assert_executed_once(sessions, 1, 2)
    assert run_row(sessions, 1).attempt == 2


def test_a_cancel_asked_while_no_worker_is_alive_is_honoured_when_one_starts(tmp_path):
    url = f"sqlite:///{tmp_path / 'cancel.sqlite'}"
    sessions = session_factory(url)
    launch_experiment(sessions, "cancel", ["iris"], ["smollm2-135m"], ["p"], [0], "smoke")
    worker = start_worker(url, tmp_path / "worker.log")
    try:
        wait_for(lambda: running_step(sessions, 1) is not None, timeout=600, interval=0.2, what="a step")
    finally:
        kill(worker)
    request_cancel(sessions, 1)
    assert run_status(sessions, 1) == RunStatus.running  # nobody is there to stop it
    time.sleep(5)  # past the 4 s stale window
    worker = start_worker(url, tmp_path / "worker.log", "--once")
    assert worker.wait(timeout=120) == 0
    assert run_status(sessions, 1) == RunStatus.cancelled
