"""The test databases: a fresh database per test on the real PostgreSQL server, and a copy of
a filled SQLite database into one, so the read queries run over both without redoing the
model runs that filled it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, insert, select, text

from db.models import Base
from db.session import get_engine


def postgres_server() -> str:
    """The server's admin URL; its absence fails the test, never skips it."""
    url = os.environ.get("BT_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("BT_TEST_POSTGRES_URL is not set: scripts/test.sh starts a server; by hand, "
                    "export BT_TEST_POSTGRES_URL=\"$(scripts/postgres.sh)\" (or deselect with -k 'not postgresql')")
    return url


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the server for the block; dropped after, open connections and all."""
    admin = create_engine(postgres_server(), isolation_level="AUTOCOMMIT")
    name = f"bt_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def copy_database(source_url: str, target_url: str) -> None:
    """Every row of every table, ids kept; PostgreSQL's id sequences then continue after them."""
    source, target = get_engine(source_url), get_engine(target_url)
    with source.connect() as read, target.begin() as write:
        for table in Base.metadata.sorted_tables:
            rows = [dict(row) for row in read.execute(select(table)).mappings()]
            if rows:
                write.execute(insert(table), rows)
            if target.dialect.name == "postgresql" and table.autoincrement_column is not None:
                write.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                   f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"))
