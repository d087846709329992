"""Which database errors a retry gets past, on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.retry import is_transient, retrying
from db.session import get_engine


def raised(engine, sql: str) -> DBAPIError:
    with pytest.raises(DBAPIError) as info, engine.connect() as conn:
        conn.execute(text(sql))
    return info.value


def test_sqlite_busy_is_transient_and_a_bad_query_is_not(tmp_path):
    path = tmp_path / "busy.sqlite"
    engine = get_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DBAPIError) as info, engine.connect() as conn:
            conn.execute(text("PRAGMA busy_timeout = 10"))
            conn.execute(text("DELETE FROM workers"))
        assert "locked" in str(info.value) and is_transient(info.value)
    finally:
        holder.execute("ROLLBACK")
    assert not is_transient(raised(engine, "SELECT no_such_column FROM runs"))


def test_a_lost_postgresql_connection_is_transient_and_retried(postgres_url, caplog):
    engine = get_engine(postgres_url)
    assert not is_transient(raised(engine, "SELEC 1"))
    calls = []

    def query_once_killed() -> int:
        with engine.connect() as conn:
            if not calls:
                calls.append(conn.execute(text("SELECT pg_backend_pid()")).scalar())
                with get_engine(postgres_url).connect() as other:
                    other.execute(text(f"SELECT pg_terminate_backend({calls[0]})"))
            return conn.execute(text("SELECT 1")).scalar()
    assert retrying(query_once_killed, give_up_after_s=10) == 1 and len(calls) == 1
    assert [r.message for r in caplog.records if "transient database error" in r.message]
