"""Schema migrations: every open brings the database to the code's schema, or refuses it.

Alembic is configured here, not from an ini file, so the library finds its migrations wherever
it is installed. A database made by create_all before migrations existed has no version table;
its shape says which revision it is at, so it is stamped and upgraded like any other. One
process at a time migrates a database: a PostgreSQL advisory lock, or an fcntl lock on a file
next to a SQLite database; the others wait and then find it at head.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, inspect, select

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PG_LOCK_KEY = 0x6274_6D69_6772_6174  # "btmigrat": one advisory lock key per database


class SchemaTooNew(Exception):
    """The database is at a revision this code does not know: a newer version wrote it."""

    def __init__(self, revision: str, head: str) -> None:
        super().__init__(f"schema revision {revision} is newer than this code (head {head})")
        self.revision, self.head = revision, head


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    """Parsed once per process: a database already at head then costs one version query."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    return _scripts().get_current_head()


@lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def upgrade(engine: Engine, target: str = "head") -> None:
    """Bring the database to `target` (a revision id or "head"); raise SchemaTooNew first, having
    written nothing, if it is at a revision this code does not know."""
    with migration_lock(engine) as connection:
        version = MigrationContext.configure(connection).get_current_revision()
        if version is not None and version not in known_revisions():
            raise SchemaTooNew(version, head())
        legacy = legacy_revision(connection) if version is None else None
        connection.commit()  # Alembic runs each command in a transaction of its own
        if version is not None and version == (head() if target == "head" else target):
            return
        config = alembic_config(connection)
        if legacy is not None:
            command.stamp(config, legacy)
        command.upgrade(config, target)


def legacy_revision(connection: Connection) -> str | None:
    """The revision of a database made by create_all before migrations (None when empty):
    "0001" before issue 15 added runs.attempt, "0002" after."""
    tables = inspect(connection)
    if not tables.has_table("runs"):
        return None
    return "0002" if "attempt" in {c["name"] for c in tables.get_columns("runs")} else "0001"


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection that alone, among the processes opening this database, may migrate it."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(select(func.pg_advisory_lock(PG_LOCK_KEY)))
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(select(func.pg_advisory_unlock(PG_LOCK_KEY)))
                connection.commit()
        return
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        with engine.connect() as connection:
            yield connection
        return
    with open(f"{path}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        with engine.connect() as connection:
            yield connection
