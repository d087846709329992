"""Alembic's entry point. db/migrate.py hands it a connection that holds the migration lock;
the `alembic` command (alembic.ini at the repository root) opens the database the app would
open (--db's BT_DATABASE_URL, else the SQLite file in BT_HOME) under the same lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from db.migrate import migration_lock
from db.models import Base


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
if (handed := context.config.attributes.get("connection")) is not None:
    run(handed)
else:
    from db.session import database_url

    with migration_lock(create_engine(database_url())) as connection:
        run(connection)
