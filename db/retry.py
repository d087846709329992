"""Retry a database operation through transient errors: SQLite busy, a lost PostgreSQL connection,
a serialization failure or a deadlock. Anything else (a bad query, a constraint) raises at once.

Each retry logs one warning with the phrase "transient database error", which
benchmarks/contention.py counts.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

T = TypeVar("T")
log = logging.getLogger("bt_core.db")

# PostgreSQL SQLSTATE classes and codes that a retry can get past: connection exceptions (08),
# transaction rollbacks such as serialization failure 40001 and deadlock 40P01 (40), an
# administrator's shutdown or a crash (57P01-57P03), and too many connections (53300).
_PG_TRANSIENT_CLASSES = ("08", "40")
_PG_TRANSIENT_CODES = {"57P01", "57P02", "57P03", "53300"}


def is_transient(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in _PG_TRANSIENT_CLASSES or sqlstate in _PG_TRANSIENT_CODES
    message = str(exc.orig).lower()
    return "database is locked" in message or "database table is locked" in message or "busy" in message


def retrying(operation: Callable[[], T], *, give_up_after_s: float, what: str = "database write") -> T:
    """Call `operation` until it succeeds, backing off (with jitter) between transient failures,
    and re-raise the last error once `give_up_after_s` has passed."""
    deadline = time.monotonic() + give_up_after_s
    delay = 0.05
    for attempt in itertools.count(1):
        try:
            return operation()
        except DBAPIError as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            reason = " ".join(str(exc.orig).split())[:200]
            log.warning("transient database error in %s (%s); retry %d in %.2fs", what, reason, attempt, delay)
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)


@contextmanager
def outage_tolerated(what: str) -> Iterator[None]:
    """For a service's polling loop: a transient error that outlasted the operation's own retries
    abandons the block with one warning, so the loop tries again at its next poll instead of the
    process dying with the database (a queue's consumer outlives its broker's outages)."""
    try:
        yield
    except DBAPIError as exc:
        if not is_transient(exc):
            raise
        reason = " ".join(str(exc.orig).split())[:200]
        log.warning("database unavailable in %s (%s); trying again at the next poll", what, reason)
