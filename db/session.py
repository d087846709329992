"""Engine and sessions: one URL from --db, BT_DATABASE_URL, or a SQLite file in the data dir.

SQLite gets WAL (the UI reads while a worker writes), a busy timeout, and foreign keys on so
deleting a run deletes its rows.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Base


class DatabaseError(ValueError):
    pass


def data_dir() -> Path:
    """Where the default database, the LM cache and adapters live."""
    return Path(os.environ.get("BT_HOME", Path.cwd() / "bt_data")).expanduser()


def database_url(url: str | None = None) -> str:
    if url:
        return url
    if os.environ.get("BT_DATABASE_URL"):
        return os.environ["BT_DATABASE_URL"]
    return f"sqlite:///{data_dir() / 'studio.sqlite'}"


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """Create the engine and the tables, or fail with one clear line."""
    url = database_url(url)
    try:
        engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    except (ArgumentError, ImportError) as exc:
        raise DatabaseError(f"bad database URL {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _prepare_sqlite(engine, url)
    try:
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        raise DatabaseError(f"cannot open database {url!r}: {exc.orig}") from None
    return engine


def _prepare_sqlite(engine: Engine, url: str) -> None:
    path = engine.url.database
    if path and path != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the folder for database {url!r}: {exc.strerror}") from None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)
