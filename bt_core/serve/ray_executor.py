"""The Ray executor: each queued run becomes a Ray task with its resource needs, so a grid spreads
over every node of a Ray cluster while the database stays the one source of truth.

The driver only submits; the task claims its run and heartbeats it exactly as a local worker
does (bt_core.serve.worker), so two tasks, or a task and a local worker, never execute one run at
once. A task that dies (its process killed, its node lost) leaves its run `running` with a
heartbeat that goes stale; the driver's re-queue puts it back, submits it again, and the new
task resumes at the run's first unfinished step. Ray's own retry is off for that reason. A task
that fails before it could claim its run (a node that cannot reach the database, say) is
submitted again START_TRIES times in all, then the run fails with the task's error, rather
than being re-submitted for ever.
Stopping the executor ends its tasks with it (Ray ends a driver's tasks), so their runs take
that same path: re-queued once stale, by the next worker or executor that serves the database.

The database password never travels through Ray (task arguments and runtime_env are visible
in Ray's dashboard and state API): tasks get the URL without it, and each node supplies it
from its own environment: BT_DATABASE_URL, PGPASSWORD or ~/.pgpass. A cluster this executor
starts on its own machine inherits the driver's environment, password included.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from dataclasses import dataclass

import ray
from ray.exceptions import RayError
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from bt_core.lm.models import EMBEDDED
from bt_core.serve.cores import CoreShare
from bt_core.serve.lease import stale_after_s
from bt_core.serve.worker import claim, execute_claimed, registered, requeue_stale
from db.models import Run, RunStatus, utcnow
from db.retry import outage_tolerated
from db.session import Sessions, database_url, get_engine, session_factory, shown

START_TRIES = 3  # tasks a run gets that fail before claiming it, before the run is failed


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # a running cluster ("host:port", "ray://host:port", "auto"); None: start one here
    cpus_per_run: float = 1.0  # CPUs a run reserves (the embedded model's threads; a GPU run's host side)
    gpus_per_run: float = 1.0  # GPUs a run of any model but the embedded one reserves


def serve_ray(db_url: str, options: RayOptions, *, once: bool = False, poll_s: float = 1.0) -> None:
    """Submit queued runs to Ray until interrupted (or, with once, until none is left to finish)."""
    sessions = session_factory(db_url)
    os.environ["BT_DATABASE_URL"] = db_url  # a cluster started here passes it to its workers' environment
    connect(options.address, db_url)
    try:
        with registered(sessions):  # the dashboard sees a live worker and starts none of its own
            _dispatch(sessions, db_url, options, once, poll_s)
    finally:
        ray.shutdown()


def connect(address: str | None, db_url: str) -> None:
    """Join (or start) the cluster, and refuse a database that some of its machines cannot see."""
    if address and address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, runtime_env={"env_vars": _forwarded_env()}, logging_level="WARNING",
                 **({} if address else {"include_dashboard": False}))
    except ConnectionError as exc:
        raise ValueError(f"cannot connect to the Ray cluster at {address!r}: {' '.join(str(exc).split())} (a "
                         "cluster with token auth needs RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN here too)") from None
    machines = sorted({node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]})
    if len(machines) > 1 and get_engine(db_url).dialect.name == "sqlite":
        ray.shutdown()
        raise ValueError(f"the Ray cluster spans {len(machines)} machines ({', '.join(machines)}) but the database "
                         f"{shown(db_url)!r} is a SQLite file that only this one sees; give every node one "
                         "PostgreSQL URL: --db postgresql://USER@HOST/DB")


def _check_reachable(address: str) -> None:
    """Fail in seconds, where ray.init would retry an unreachable address for a minute."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ValueError(f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}") from None


def _forwarded_env() -> dict[str, str]:
    """The driver's BT_ settings (data dir, adapters folder) hold on every node; the database URL
    is the nodes' own (it may hold a password), and so are BT_HOME and the LM cache, which must
    stay on each node's local disk (SQLite's WAL does not work over a network file system)."""
    own = {"BT_DATABASE_URL", "BT_HOME", "BT_LM_CACHE"}
    return {key: value for key, value in os.environ.items() if key.startswith("BT_") and key not in own}


def resources(model: str, options: RayOptions) -> dict[str, float]:
    """The embedded model runs on CPUs; any other model is taken for a GPU model (the paper's 7-8B)."""
    return {"num_cpus": options.cpus_per_run, "num_gpus": 0 if model == EMBEDDED else options.gpus_per_run}


def _dispatch(sessions: Sessions, db_url: str, options: RayOptions, once: bool,
              poll_s: float) -> None:
    inflight: dict[ray.ObjectRef, tuple[int, int]] = {}  # a task -> its run and the run's attempt then
    submitted: set[int] = set()
    failed_starts: Counter[int] = Counter()
    while True:
        with outage_tolerated("the Ray dispatcher"):
            requeue_stale(sessions)
            for run_id, model, attempt in _queued(sessions, exclude={run for run, _ in inflight.values()}):
                inflight[_submit(db_url, run_id, model, options)] = (run_id, attempt)
                submitted.add(run_id)
            if not inflight and once and not _running(sessions, submitted):
                return
        if not inflight:
            time.sleep(poll_s)
            continue
        ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=poll_s)
        for ref in ready:
            run_id, attempt = inflight.pop(ref)
            if (error := _report(run_id, ref)) is None:
                continue
            with outage_tolerated("the Ray dispatcher"):  # a start that failed unseen is tried again
                if _unclaimed(sessions, run_id, attempt):
                    failed_starts[run_id] += 1
                    _report_failed_start(sessions, run_id, attempt, failed_starts[run_id], error)


def _submit(db_url: str, run_id: int, model: str, options: RayOptions) -> ray.ObjectRef:
    needs = resources(model, options)
    gpus = ray.cluster_resources().get("GPU", 0)
    if needs["num_gpus"] > gpus:  # Ray would keep it pending without a word
        print(f"run {run_id} ({model}) needs {needs['num_gpus']:g} GPU and the cluster has {gpus:g}: "
              "it stays queued until a GPU node joins (or pass --gpus-per-run 0 to run it on CPUs)", flush=True)
    return _run_task.options(**needs).remote(_without_password(db_url), run_id)


def _queued(sessions: Sessions, exclude: set[int]) -> list[tuple[int, str, int]]:
    """(run id, model, attempt) of the queued runs not in `exclude`, oldest first."""
    with sessions() as session:
        rows = session.execute(select(Run.id, Run.model, Run.attempt).where(Run.status == RunStatus.queued)
                               .order_by(Run.id))
        return [(run_id, model, attempt) for run_id, model, attempt in rows if run_id not in exclude]


def _unclaimed(sessions: Sessions, run_id: int, attempt: int) -> bool:
    """Whether the run is still queued at the attempt its task was submitted for: the task never claimed it."""
    with sessions() as session:
        return session.scalar(select(Run.id).where(Run.id == run_id, Run.status == RunStatus.queued,
                                                   Run.attempt == attempt)) is not None


def _report_failed_start(sessions: Sessions, run_id: int, attempt: int, tries: int, error: str) -> None:
    """Say so; after START_TRIES, fail the run (if no one claimed it meanwhile) with the task's error."""
    if tries < START_TRIES:
        print(f"run {run_id}: its Ray task failed before it could claim the run ({tries} of {START_TRIES} "
              f"tries): {error}", flush=True)
        return
    message = f"its Ray task failed {tries} times before it could claim the run: {error}"
    with sessions.begin() as session:
        failed = session.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.queued,
                                                   Run.attempt == attempt)
                                 .values(status=RunStatus.failed, error=message, finished_at=utcnow())).rowcount
    if failed:
        print(f"run {run_id}: failed: {message}", flush=True)


def _running(sessions: Sessions, run_ids: set[int]) -> bool:
    """Whether one of these runs still counts as running: a dead task's run waits for its re-queue."""
    with sessions() as session:
        return session.scalar(select(Run.id).where(Run.id.in_(run_ids), Run.status == RunStatus.running)
                              .limit(1)) is not None


def _report(run_id: int, ref: ray.ObjectRef) -> str | None:
    """Print how the task ended; the error in one line when it failed, else None."""
    try:
        print(f"run {run_id}: {ray.get(ref)}", flush=True)
        return None
    except RayError as exc:
        cause = getattr(exc, "cause", None) or exc
        error = f"{type(cause).__name__}: {' '.join(str(cause).split())[:400]}"
        print(f"run {run_id}: its Ray task died ({type(exc).__name__}); a run it had claimed is re-queued once "
              f"its heartbeat is {stale_after_s():.0f}s old and resumes at its first unfinished step", flush=True)
        return error


def _without_password(db_url: str) -> str:
    return make_url(db_url)._replace(password=None).render_as_string(hide_password=False)


def node_database_url(driver_url: str) -> str:
    """The node's own BT_DATABASE_URL when it names the driver's database (it may carry the
    password), else the driver's password-less URL (libpq then reads PGPASSWORD or ~/.pgpass)."""
    own = os.environ.get("BT_DATABASE_URL")
    if own and _without_password(database_url(own)) == driver_url:
        return database_url(own)
    return driver_url


@ray.remote(max_retries=0)
def _run_task(db_url: str, run_id: int) -> str:
    """On a Ray worker: claim the run if it is still queued and execute it as a local worker does."""
    sessions = session_factory(node_database_url(db_url))
    threads = max(1, round(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))  # the reservation
    with registered(sessions) as me:
        lease = claim(sessions, me.worker, run_id, threads=threads)
        if lease is None:
            return "skipped: claimed elsewhere or cancelled since it was submitted"
        status = execute_claimed(me, lease, CoreShare(threads), resizable=False)
        return "stopped: another worker took the run over" if status is None else status.value
