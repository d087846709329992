"""The queue and the recorder on a real SQLite file and a real PostgreSQL server: claims,
leases, stale re-queues, cancel, rows."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bt_core.lm.base import LoraConfig, TrainingLog
from bt_core.lm.scripted import ScriptedLM
from bt_core.optimizers import BootstrapFewShotWithRandomSearch
from bt_core.recording import RunCancelled, recording
from bt_core.serve import worker
from bt_core.serve.lease import Lease, LeaseLost
from bt_core.serve.queue import launch_experiment, request_cancel, retry_run
from bt_core.serve.recording_db import RunRecorder
from bt_core.serve.worker import claim, registered, requeue_stale
from bt_core.tasks import get_task
from db.clock import database_now
from db.models import ExampleScore, Program, Run, RunStatus, Step, Trace, Training, Worker
from db.session import session_factory
from tests.scripted import lost_with_demos, scripted_iris_lm


@pytest.fixture
def sessions(db_url):
    return session_factory(db_url)


def queue(sessions, strategies=("p", "w")):
    return launch_experiment(sessions, "t", ["iris"], ["smollm2-135m"], list(strategies), [0, 1], "smoke")


def test_launch_validates_the_whole_grid_before_writing(sessions):
    with pytest.raises(ValueError, match="unknown strategy step 'x'"):
        queue(sessions, ["p", "p -> x"])
    with sessions() as s:
        assert s.scalar(select(func.count(Run.id))) == 0
    queue(sessions)
    with sessions() as s:
        runs = s.scalars(select(Run)).all()
    assert [(r.strategy, r.seed) for r in runs] == [("p", 0), ("p", 1), ("w", 0), ("w", 1)]
    assert len({r.config_hash for r in runs}) == 4


def test_each_claim_takes_a_different_run(sessions):
    queue(sessions)
    claimed = [claim(sessions, f"w{i}") for i in range(5)]
    assert sorted(lease.run_id for lease in claimed[:4]) == [1, 2, 3, 4] and claimed[4] is None
    assert {lease.attempt for lease in claimed[:4]} == {1}


def test_concurrent_claims_take_every_run_exactly_once(sessions):
    queue(sessions)
    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(lambda i: claim(sessions, f"w{i}"), range(8)))
    assert sorted(c.run_id for c in claimed if c is not None) == [1, 2, 3, 4]


def test_a_claim_passes_over_a_run_another_worker_is_taking(postgres_url):
    sessions = session_factory(postgres_url)
    queue(sessions)
    with ThreadPoolExecutor(1) as pool, sessions.begin() as other:
        other.execute(select(Run.id).where(Run.id == 1).with_for_update())  # mid-claim elsewhere
        assert pool.submit(claim, sessions, "me").result(timeout=10).run_id == 2


def test_a_named_run_is_claimed_only_while_queued(sessions):
    queue(sessions)
    request_cancel(sessions, 4)
    assert claim(sessions, "a", run_id=3).run_id == 3
    assert claim(sessions, "b", run_id=3) is None and claim(sessions, "b", run_id=4) is None
    with sessions() as s:
        assert s.get(Run, 3).worker == "a"


def test_a_run_whose_worker_stopped_heartbeating_is_requeued(sessions, monkeypatch):
    monkeypatch.setenv("BT_STALE_AFTER_S", "10")
    queue(sessions)
    dead = claim(sessions, "dead")
    assert requeue_stale(sessions) == 0
    age(sessions, dead.run_id, 11)
    assert requeue_stale(sessions) == 1
    alive = claim(sessions, "alive")
    assert (alive.run_id, alive.attempt) == (dead.run_id, 2)


def age(sessions, run_id, seconds):
    """Make a run's heartbeat this old by the database's clock (as a frozen worker's would be)."""
    with sessions.begin() as s:
        s.execute(update(Run).where(Run.id == run_id)
                  .values(heartbeat_at=database_now(s) - timedelta(seconds=seconds)))


def test_a_worker_that_lost_its_run_writes_nothing_more(sessions, monkeypatch):
    """The first owner froze past the stale window; the run went to another worker. The first
    owner's writes and heartbeats fail their fence and change nothing; the new owner's hold."""
    monkeypatch.setenv("BT_STALE_AFTER_S", "10")
    queue(sessions)
    first = claim(sessions, "frozen")
    age(sessions, first.run_id, 11)
    requeue_stale(sessions)
    second = claim(sessions, "alive", first.run_id)
    message = lambda text: lambda s: s.execute(update(Run).where(Run.id == first.run_id).values(message=text))
    with pytest.raises(LeaseLost, match="taken over"):
        first.write(message("from the frozen worker"))
    with pytest.raises(LeaseLost):
        first.beat()
    second.write(message("from the new owner"))
    second.beat()
    with sessions() as s:
        run = s.get(Run, first.run_id)
        assert (run.message, run.worker, run.attempt, run.status) == ("from the new owner", "alive", 2,
                                                                       RunStatus.running)


def test_a_worker_that_deregistered_stays_gone_whatever_its_heartbeat_was_doing(sessions, monkeypatch):
    """A heartbeat that was stamping while the worker deregistered must not insert its row again:
    a dashboard would see a live worker that is gone (and start none of its own)."""
    monkeypatch.setattr(worker, "HEARTBEAT_S", 0.0)  # the heartbeat stamps without pause: the race is always on
    for _ in range(30):
        with registered(sessions):
            time.sleep(0.01)
        time.sleep(0.02)  # time for a stamp that was in flight to land
        with sessions() as s:
            assert s.scalar(select(func.count()).select_from(Worker)) == 0


def test_the_heartbeat_and_the_stale_cutoff_use_the_database_clock(sessions):
    queue(sessions)
    lease = claim(sessions, "w")
    lease.beat()
    with sessions() as s:
        stamped, now = s.get(Run, lease.run_id).heartbeat_at, database_now(s)
    assert timedelta(0) <= now - stamped < timedelta(seconds=5)


def test_a_run_without_any_heartbeat_is_requeued(sessions):
    """Rows an earlier version's `bt_core run` left running with no heartbeat are not stuck forever."""
    queue(sessions)
    lease = claim(sessions, "old-cli")
    with sessions.begin() as s:
        s.execute(update(Run).where(Run.id == lease.run_id).values(heartbeat_at=None))
    assert requeue_stale(sessions) == 1
    with sessions() as s:
        assert s.get(Run, lease.run_id).status == RunStatus.queued


def test_a_cancel_asked_while_the_worker_is_dead_survives_the_requeue(sessions, monkeypatch):
    monkeypatch.setenv("BT_STALE_AFTER_S", "10")
    queue(sessions)
    dead = claim(sessions, "dead")
    request_cancel(sessions, dead.run_id)
    age(sessions, dead.run_id, 11)
    requeue_stale(sessions)  # what the next worker does when it starts
    with sessions() as s:
        run = s.get(Run, dead.run_id)
        assert run.status == RunStatus.cancelled and run.finished_at is not None
    assert claim(sessions, "next", dead.run_id) is None


def test_a_cancel_on_a_run_handed_back_stops_it_when_next_claimed(sessions):
    queue(sessions)
    lease = claim(sessions, "w")
    request_cancel(sessions, lease.run_id)
    lease.write(lambda s: s.execute(update(Run).where(Run.id == lease.run_id).values(status=RunStatus.queued)))
    again = claim(sessions, "next", lease.run_id)
    recorder = RunRecorder(again, 0, "p")
    with pytest.raises(RunCancelled):
        recorder.progress("starting")


def test_cancel_and_retry(sessions):
    queue(sessions)
    running = claim(sessions, "w").run_id
    request_cancel(sessions, running)
    request_cancel(sessions, 2)  # still queued: cancelled at once
    with sessions() as s:
        assert s.get(Run, running).cancel_requested and s.get(Run, 2).status == RunStatus.cancelled
    with pytest.raises(ValueError, match="not failed or cancelled"):
        retry_run(sessions, running)
    retry_run(sessions, 2)
    with sessions() as s:
        assert s.get(Run, 2).status == RunStatus.queued


def claimed_step(sessions, kind: str) -> tuple[Lease, int]:
    """Run 1 claimed, with a running step 1 of `kind`: what a recorder writes under."""
    queue(sessions)
    lease = claim(sessions, "test", 1)
    with sessions.begin() as s:
        step = Step(run_id=1, index=1, kind=kind, label=kind)
        s.add(step)
        s.flush()
        return lease, step.id


def test_recorder_writes_candidates_scores_and_traces(sessions):
    lease, step_id = claimed_step(sessions, "p")
    iris = get_task("iris")
    splits = iris.load(10, 10, 0, seed=0)
    program = iris.program()
    program.set_lm(scripted_iris_lm())
    recorder = RunRecorder(lease, step_id, "p")
    with recording(recorder):
        optimizer = BootstrapFewShotWithRandomSearch(iris.metric, num_candidates=1)
        optimizer.compile(program, trainset=splits.train, valset=splits.val)
    with sessions() as s:
        programs = s.scalars(select(Program).order_by(Program.id)).all()
        candidates = [p for p in programs if p.role == "candidate"]
        assert [p.label for p in candidates][:3] == ["zero-shot", "labeled demos", "bootstrapped"]
        assert all(p.val_score is not None for p in candidates)
        assert candidates[2].state["classify"]["demos"]
        val_rows = s.scalar(select(func.count(ExampleScore.id)).where(ExampleScore.split == "val"))
        assert val_rows == 10 * len(candidates)
        trace = s.scalars(select(Trace).where(Trace.program_id == candidates[0].id)).first()
        assert trace.module == "classify" and trace.parse_error and trace.completion
        assert trace.messages[0]["role"] == "system" and trace.prompt_tokens > 0


def test_a_candidate_stopped_early_is_stored_as_what_is_known(sessions):
    """Not a partial mean: no score, how many of the validation examples it was scored on, and its ceiling."""
    lease, step_id = claimed_step(sessions, "p")
    iris = get_task("iris")
    splits = iris.load(15, 48, 0, seed=0)
    program = iris.program()
    program.set_lm(ScriptedLM(lost_with_demos))
    recorder = RunRecorder(lease, step_id, "p")
    search = BootstrapFewShotWithRandomSearch(iris.metric, num_candidates=1)
    with recording(recorder):
        search.compile(program, trainset=splits.train, valset=splits.val)
    with sessions() as s:
        first, *later = s.scalars(select(Program).where(Program.role == "candidate").order_by(Program.id)).all()
        assert (first.val_scored, first.val_size, first.val_ceiling) == (48, 48, None) and first.val_score > 2 / 3
        assert later and [(p.val_score, p.val_scored, p.val_size, p.val_ceiling) for p in later] == [
            (None, 16, 48, 32 / 48)] * len(later)  # fewer rows than candidates: equal programs are stored once
        rows = s.execute(select(ExampleScore.program_id, func.count()).where(ExampleScore.split == "val")
                         .group_by(ExampleScore.program_id)).all()
        assert dict(rows)[first.id] == 48 and sum(n for _, n in rows) == 48 + 3 * 16
    assert search.validation_score(splits.val) == first.val_score  # the chosen one, scored in full
    assert search.validation_score(splits.val + splits.train) is None  # not scored on that larger set


def test_a_program_stopped_as_a_later_candidate_keeps_its_full_score(sessions):
    """Without demos every candidate is the zero-shot program, stored once; it scores 1.0 first, so
    its later turns stop before any example, and must not overwrite that score."""
    lease, step_id = claimed_step(sessions, "p")
    iris = get_task("iris")
    splits = iris.load(15, 48, 0, seed=0)
    setosa = [e for e in splits.val if e["species"] == "setosa"]
    program = iris.program()
    program.set_lm(ScriptedLM(lost_with_demos))
    search = BootstrapFewShotWithRandomSearch(iris.metric, num_candidates=1, max_bootstrapped_demos=0,
                                              max_labeled_demos=0)
    with recording(RunRecorder(lease, step_id, "p")):
        search.compile(program, trainset=splits.train, valset=setosa)
    assert [(c.score, c.scored) for c in search.candidates] == [(1.0, len(setosa))] + [(None, 0)] * 3
    with sessions() as s:
        stored = s.scalars(select(Program).where(Program.role == "candidate")).all()
        assert [(p.val_score, p.val_scored, p.val_ceiling) for p in stored] == [(1.0, len(setosa), None)]


def test_progress_raises_once_cancel_is_requested(sessions):
    queue(sessions)
    recorder = RunRecorder(claim(sessions, "w"), 0, "p")
    recorder.progress("working")
    request_cancel(sessions, 1)
    recorder._last_progress = 0
    with pytest.raises(RunCancelled):
        recorder.progress("still working")
    with sessions() as s:
        assert s.get(Run, 1).message == "p: still working"


def test_a_training_row_says_how_many_conversations_were_shortened(sessions):
    lease, step_id = claimed_step(sessions, "w")
    recorder = RunRecorder(lease, step_id, "w")
    recorder.training(TrainingLog("adapter", [(1, 0.5)], 1.0, 40, shortened=3, tokens_cut=700), LoraConfig())
    recorder.training_skipped("nothing passed", LoraConfig())
    with sessions() as s:
        rows = s.scalars(select(Training).order_by(Training.id)).all()
        assert [(r.examples, r.shortened, r.tokens_cut) for r in rows] == [(40, 3, 700), (0, 0, 0)]
