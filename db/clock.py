"""The database server's clock, so that hosts with skewed clocks agree on whose heartbeat is stale.

`db_now()` is a SQL expression for the server's current UTC time as a naive timestamp (what the
DateTime columns hold); `database_now(session)` reads it once, to compute a cutoff.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement


class db_now(FunctionElement):  # noqa: N801 - reads as the SQL function it stands for
    type = DateTime()
    inherit_cache = True


@compiles(db_now)
def _default(element, compiler, **kw) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(db_now, "sqlite")
def _sqlite(element, compiler, **kw) -> str:
    # The text SQLAlchemy itself stores: 'YYYY-MM-DD HH:MM:SS.ffffff' (%f gives milliseconds).
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


@compiles(db_now, "postgresql")
def _postgresql(element, compiler, **kw) -> str:
    return "(statement_timestamp() AT TIME ZONE 'UTC')"


def database_now(session: Session) -> datetime:
    return session.scalar(select(db_now()))
