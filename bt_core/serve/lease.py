"""A claim is a lease: the run's `attempt` counter names its holder, and every write for the run
proves, in its own transaction, that the run is still running under that attempt.

A worker that was frozen (SIGSTOP, a sleeping laptop, a paused VM) or cut off from the database
past the stale window may find its run re-queued and taken by another worker; its next write
then fails the fence, raises LeaseLost, and it stops without writing anything more. The fence
is an UPDATE of the run's row, so it also locks the row (PostgreSQL) or the database (SQLite)
until the transaction commits: nobody can take the run between the check and the write.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.clock import db_now
from db.models import Run, RunStatus
from db.retry import is_transient, retrying
from db.session import Sessions

T = TypeVar("T")


def stale_after_s() -> float:
    """A run whose heartbeat is older than this, by the database's clock, is re-queued."""
    return float(os.environ.get("BT_STALE_AFTER_S", "20"))


class LeaseLost(Exception):
    """This process no longer holds the run: it stops at once and writes nothing more."""


class Lease:
    def __init__(self, sessions: Sessions, run_id: int, attempt: int, worker: str) -> None:
        self.sessions, self.run_id, self.attempt, self.worker = sessions, run_id, attempt, worker
        self._lost: str | None = None
        self._last_beat = time.monotonic()

    def __repr__(self) -> str:
        return f"Lease(run {self.run_id}, attempt {self.attempt}, {self.worker})"

    def write(self, operation: Callable[[Session], T], what: str = "run write",
              give_up_after_s: float | None = None) -> T:
        """Run `operation` in one transaction that first checks the lease; retry transient errors.

        A database that stays unreachable for the whole stale window loses the lease: by then
        another worker may hold the run.
        """
        patience = stale_after_s() if give_up_after_s is None else give_up_after_s
        def fenced() -> T:
            self.check()
            with self.sessions.begin() as session:
                self._hold(session)
                return operation(session)
        try:
            return retrying(fenced, give_up_after_s=patience, what=what)
        except Exception as exc:
            if is_transient(exc):
                self.lose(f"the database refused writes for {patience:.0f}s ({type(exc).__name__})")
                raise LeaseLost(self._lost) from exc
            raise

    def beat(self, **values) -> None:
        """Stamp the run's heartbeat with the database's clock, with `values` of the run's columns
        (one try; the caller retries)."""
        with self.sessions.begin() as session:
            self._hold(session, heartbeat_at=db_now(), **values)
        self._last_beat = time.monotonic()

    def silent_for(self) -> float:
        return time.monotonic() - self._last_beat

    def check(self) -> None:
        if self._lost is not None:
            raise LeaseLost(self._lost)

    def lose(self, why: str) -> None:
        if self._lost is None:
            self._lost = f"run {self.run_id} attempt {self.attempt} lost: {why}"

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def _hold(self, session: Session, **values) -> None:
        held = session.execute(
            update(Run).where(Run.id == self.run_id, Run.attempt == self.attempt, Run.status == RunStatus.running)
            .values(attempt=Run.attempt, **values)).rowcount
        if not held:
            self.lose("it was re-queued, cancelled or taken over by another worker")
            raise LeaseLost(self._lost)

