"""Engine and sessions: one URL from --db, BT_DATABASE_URL, or a SQLite file in the data dir.

Opening a database migrates it to the code's schema (db/migrate.py), once per process and URL.
SQLite gets WAL (the UI reads while a worker writes), a busy timeout, and foreign keys on so
deleting a run deletes its rows. PostgreSQL (what several machines share) goes through psycopg 3
whatever driver the URL names, with a connect timeout so an unreachable server fails in seconds.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.migrate import SchemaTooNew, upgrade

Sessions = sessionmaker[Session]  # what opens sessions on one database; every layer passes this


class DatabaseError(ValueError):
    pass


def data_dir() -> Path:
    """Where the default database, the LM cache and adapters live."""
    return Path(os.environ.get("BT_HOME", Path.cwd() / "bt_data")).expanduser()


def artifacts_root() -> Path:
    """Where runs keep their adapters: BT_ARTIFACTS, the one folder that the machines of a cluster
    must share (each keeps BT_HOME, its LM cache, on local disk), else BT_HOME/artifacts."""
    return Path(os.environ.get("BT_ARTIFACTS") or data_dir() / "artifacts").expanduser()


def database_url(url: str | None = None) -> str:
    if url:
        return _with_driver(url)
    if os.environ.get("BT_DATABASE_URL"):
        return _with_driver(os.environ["BT_DATABASE_URL"])
    return f"sqlite:///{data_dir() / 'studio.sqlite'}"


def _with_driver(url: str) -> str:
    """postgresql://... would pick psycopg2, which is not installed; psycopg 3 is."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def shown(url: str) -> str:
    """The URL as errors and logs may print it: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """Create the engine and bring the schema to head, or fail with one clear line."""
    url = database_url(url)
    try:
        engine = create_engine(url, **_engine_options(url))
    except (ArgumentError, ImportError) as exc:
        raise DatabaseError(f"bad database URL {shown(url)!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _prepare_sqlite(engine, url)
    try:
        upgrade(engine)
    except (SchemaTooNew, OperationalError, OSError) as exc:  # OSError: the SQLite lock file
        engine.dispose()
        raise DatabaseError(_open_failure(url, exc)) from None
    return engine


def _open_failure(url: str, exc: Exception) -> str:
    if isinstance(exc, SchemaTooNew):
        return (f"database {shown(url)!r} is at schema revision {exc.revision}, newer than this code "
                f"(head {exc.head}): upgrade BetterTogether Studio")
    reason = exc.strerror if isinstance(exc, OSError) else " ".join(str(exc.orig).split())  # psycopg's span lines
    return f"cannot open database {shown(url)!r}: {reason}"


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Shorter than the stale window (BT_STALE_AFTER_S, 20 s): a write waits for the lock a
        # while, then db/retry.py backs off and tries again, and the heartbeat goes on.
        return {"connect_args": {"timeout": 5}}
    if url.startswith("postgresql"):  # long-lived workers on a network: drop dead connections
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


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


def session_factory(url: str | None = None) -> Sessions:
    return sessionmaker(get_engine(url), expire_on_commit=False)
