"""The worker: claims queued runs from the database and executes them, one at a time.

A job is a row: claiming is one atomic UPDATE of a queued row that takes the run's next
attempt, so two workers never take the same run, and every later write for the run is fenced
by that attempt (bt_core/serve/lease.py). A heartbeat thread stamps the worker and its run with the
database's clock; a run whose stamp is older than BT_STALE_AFTER_S is re-queued by any live
worker (or cancelled, if a cancel was asked meanwhile) and resumes at its first unfinished step.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, insert, or_, select, update

from bt_core.serve.cores import CoreShare, fair_share, machine_cores, take_cores, use_threads
from bt_core.serve.lease import Lease, LeaseLost, stale_after_s
from bt_core.serve.queue import workers_here
from bt_core.serve.runner import run_to_end
from db.clock import database_now, db_now
from db.models import Experiment, Run, RunStatus, Worker, utcnow
from db.retry import outage_tolerated, retrying
from db.session import Sessions

HEARTBEAT_S = 2.0
log = logging.getLogger("bt_core.serve.worker")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Registration:
    """A registered worker process and the lease of the run it is executing, which its heartbeat stamps."""

    worker: str
    lease: Lease | None = None
    share: CoreShare | None = None  # the core slots behind the lease's run, resized as workers come and go


def serve(sessions: Sessions, *, once: bool = False, poll_s: float = 1.0) -> None:
    """Serve queued runs until interrupted (or, with once, until the queue is empty).

    Cores come before the run: a worker that finds every core of its host held claims nothing
    and waits, so the queued run goes to a worker that can compute it now."""
    with registered(sessions) as me:
        while True:
            taken = None
            with outage_tolerated("the worker's claim"):
                taken = claim_next(sessions, me.worker)
                if taken is None and once and not queued(sessions):
                    return
            if taken is None:
                time.sleep(poll_s)
                continue
            lease, share = taken
            try:
                execute_claimed(me, lease, share)
            finally:
                share.release()


def claim_next(sessions: Sessions, me: str) -> tuple[Lease, CoreShare] | None:
    """Re-queue stale runs, then take this process's cores and the oldest queued run; None, with
    the cores released, while either is missing."""
    requeue_stale(sessions)
    share = take_share(sessions)
    if share is None:
        return None
    try:
        lease = claim(sessions, me, threads=share.threads)
    except BaseException:
        share.release()
        raise
    if lease is None:
        share.release()
        return None
    return lease, share


@contextmanager
def registered(sessions: Sessions) -> Iterator[Registration]:
    """This process as a row of `workers`, heartbeating (itself and its run) until the block ends."""
    me = Registration(worker_id())

    def register() -> None:
        with sessions.begin() as session:
            session.execute(delete(Worker).where(Worker.id == me.worker))
            session.execute(insert(Worker).values(id=me.worker, started_at=utcnow(), heartbeat_at=db_now()))
    retrying(register, give_up_after_s=stale_after_s(), what="worker registration")
    stop = threading.Event()
    beating = threading.Thread(target=_heartbeat, args=(sessions, me, stop), name="heartbeat", daemon=True)
    beating.start()
    try:
        yield me
    finally:
        stop.set()
        beating.join(stale_after_s())  # a stamp in flight would insert the row again after the delete
        try:
            with sessions.begin() as session:
                session.execute(delete(Worker).where(Worker.id == me.worker))
        except Exception as exc:  # leaving anyway: the stale rule removes the row
            log.warning("could not deregister worker %s: %s", me.worker, exc)


def execute_claimed(me: Registration, lease: Lease, share: CoreShare, *, resizable: bool = True) -> RunStatus | None:
    """Run a claimed run to its end on `share`'s threads under this worker's heartbeat; None when
    the lease was lost. The heartbeat resizes a resizable share as workers come and go on this
    host; a Ray task's reservation is not resizable."""
    use_threads(share)
    me.lease, me.share = lease, share if resizable else None
    try:
        return run_to_end(lease)
    except LeaseLost as exc:
        log.warning("%s; stopped without writing more", exc)
        print(f"{exc}; this worker stopped it without writing more", file=sys.stderr, flush=True)
        return None
    except BaseException:  # stopped (SIGTERM, Ctrl-C, a cancelled task): hand the run back at once
        _hand_back(lease, "re-queued: its worker was stopped")
        raise
    finally:
        me.lease, me.share = None, None


def claim(sessions: Sessions, me: str, run_id: int | None = None, *,
          threads: int | None = None) -> Lease | None:
    """Take the oldest queued run (or this one, if still queued) under a fresh lease; None when none.

    On PostgreSQL, SKIP LOCKED lets concurrent claims pass over a row another worker is
    taking instead of queueing behind it and then finding it gone (SQLite ignores it).
    """
    target = run_id if run_id is not None else (
        select(Run.id).where(Run.status == RunStatus.queued).order_by(Run.id).limit(1)
        .with_for_update(skip_locked=True).scalar_subquery())

    def take() -> tuple[int, int] | None:
        with sessions.begin() as session:
            row = session.execute(
                update(Run).where(Run.id == target, Run.status == RunStatus.queued)
                .values(status=RunStatus.running, worker=me, attempt=Run.attempt + 1, heartbeat_at=db_now(),
                        started_at=utcnow(), error=None, cpu_threads=threads)
                .returning(Run.id, Run.attempt)).first()
            return None if row is None else (row[0], row[1])
    taken = retrying(take, give_up_after_s=stale_after_s(), what="claim")
    return None if taken is None else Lease(sessions, taken[0], taken[1], me)


def claim_new(sessions: Sessions, me: str, experiment: Experiment, *,
              threads: int | None = None) -> Lease:
    """Insert a one-run experiment already claimed by `me`, so no other worker can take it first."""
    [run] = experiment.runs
    run.status, run.worker, run.attempt, run.started_at = RunStatus.running, me, 1, utcnow()
    run.cpu_threads = threads
    run.heartbeat_at = db_now()
    with sessions.begin() as session:
        session.add(experiment)
        session.flush()
        return Lease(sessions, run.id, 1, me)


def requeue_stale(sessions: Sessions) -> int:
    """Put back the running runs whose worker stopped heartbeating (by the database's clock), or
    cancel them if a cancel was asked meanwhile; a run with no heartbeat at all counts as stale."""
    def sweep() -> int:
        with sessions.begin() as session:
            cutoff = database_now(session) - timedelta(seconds=stale_after_s())
            stale = update(Run).where(Run.status == RunStatus.running,
                                      or_(Run.heartbeat_at < cutoff, Run.heartbeat_at.is_(None)))
            cancelled = session.execute(stale.where(Run.cancel_requested).values(
                status=RunStatus.cancelled, worker=None, finished_at=utcnow(), cancel_requested=False,
                message="cancelled while its worker was gone")).rowcount
            requeued = session.execute(stale.values(
                status=RunStatus.queued, worker=None, message="re-queued: its worker stopped responding")).rowcount
            session.execute(delete(Worker).where(Worker.heartbeat_at < cutoff))
            return cancelled + requeued
    return retrying(sweep, give_up_after_s=stale_after_s(), what="re-queue of stale runs")


def _hand_back(lease: Lease, message: str) -> None:
    """Re-queue our own run on the way out; if the database refuses, the stale rule does it later."""
    try:
        lease.write(lambda session: session.execute(
            update(Run).where(Run.id == lease.run_id).values(status=RunStatus.queued, worker=None, message=message)),
            what="hand back", give_up_after_s=2.0)
    except Exception as exc:
        log.warning("could not hand back run %d: %s", lease.run_id, exc)


def _heartbeat(sessions: Sessions, me: Registration, stop: threading.Event) -> None:
    """Survives transient database errors; a run whose heartbeat was refused for a whole stale
    window is given up (another worker may hold it by now), so the runner stops at its next write."""
    while not stop.wait(HEARTBEAT_S):
        lease, share = me.lease, me.share
        if lease is not None and not lease.lost:
            try:
                beat(sessions, lease, share)
            except LeaseLost:
                pass
            except Exception as exc:
                log.warning("heartbeat of run %d failed: %s", lease.run_id, " ".join(str(exc).split())[:200])
                if lease.silent_for() > stale_after_s():
                    lease.lose(f"no heartbeat reached the database for {stale_after_s():.0f}s")
        try:
            stamp_worker(sessions, me.worker, lease.run_id if lease else None)
        except Exception as exc:
            log.warning("heartbeat of worker %s failed: %s", me.worker, " ".join(str(exc).split())[:200])


def stamp_worker(sessions: Sessions, worker: str, run_id: int | None) -> None:
    """Stamp this worker's row; a row swept as stale while the database was out of reach is
    inserted again, so a worker that lived through the outage is seen alive (and no second one
    is started for the dashboard)."""
    with sessions.begin() as session:
        values = {"heartbeat_at": db_now(), "current_run_id": run_id}
        if not session.execute(update(Worker).where(Worker.id == worker).values(**values)).rowcount:
            session.execute(insert(Worker).values(id=worker, started_at=utcnow(), **values))


def beat(sessions: Sessions, lease: Lease, share: CoreShare | None) -> None:
    """Stamp the run's heartbeat; with a share, keep it fair as workers come and go on this host
    (give slots back to a newcomer, take freed ones up again) and record it on the run. A shrink
    is recorded before its slots are freed and a growth after they are taken, so the threads
    recorded on a host's running runs never add up to more than its cores."""
    if share is None:
        lease.beat()
        return
    wanted = fair_share(len(workers_here(sessions)))
    if wanted < share.threads:
        lease.beat(cpu_threads=wanted)
    if share.resize(wanted):
        use_threads(share)  # the LM's threads take it before their next step
    lease.beat(cpu_threads=share.threads)


def wait_for_cores(sessions: Sessions, poll_s: float = 1.0) -> CoreShare:
    """This process's share of the host's cores, once some are free (a foreground run waits
    for them as a worker does, saying so once)."""
    said = False
    while (share := take_share(sessions)) is None:
        if not said:
            print("waiting for a free core: every core of this machine is held by another run", file=sys.stderr,
                  flush=True)
            said = True
        time.sleep(poll_s)
    return share


def take_share(sessions: Sessions, settle_s: float = 1.0) -> CoreShare | None:
    """This process's share of the host's cores (bt_core/serve/cores.py), or None while others hold them.

    Slots held by a process whose run does not heartbeat (suspended with Ctrl-Z or SIGSTOP: it
    computes nothing, yet the kernel keeps its locks) are not counted against the cores; seen
    twice, `settle_s` apart, so a claim in flight is not mistaken for one."""
    wanted = fair_share(len(workers_here(sessions)))
    for attempt in range(2):
        if (share := take_cores(wanted)) is not None or (free := free_threads(sessions)) <= 0:
            return share
        if attempt == 0:
            time.sleep(settle_s)
    return CoreShare(min(wanted, free))


def free_threads(sessions: Sessions) -> int:
    """The host's cores less the threads of the runs on it that heartbeat."""
    host = socket.gethostname()
    with sessions() as session:
        cutoff = database_now(session) - timedelta(seconds=stale_after_s())
        busy = session.scalar(select(func.coalesce(func.sum(Run.cpu_threads), 0)).where(
            Run.status == RunStatus.running, Run.heartbeat_at >= cutoff,
            Run.worker.startswith(f"{host}:", autoescape=True)))
    return machine_cores() - busy


def queued(sessions: Sessions) -> bool:
    with sessions() as session:
        return session.scalar(select(Run.id).where(Run.status == RunStatus.queued).limit(1)) is not None
