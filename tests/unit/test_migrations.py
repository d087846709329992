"""Schema migrations on a real SQLite file and a real PostgreSQL server: the revisions build
exactly the models, an older database is upgraded with its rows, a newer one is refused
untouched, and processes opening one database at once do not both migrate it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, make_url, text

from db.migrate import head, upgrade
from db.models import Base
from db.session import DatabaseError, get_engine
from tests.conftest import REPO, bt


def schema_differences(engine: Engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                               "compare_server_default": True})
        return compare_metadata(context, Base.metadata)


def version(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@pytest.fixture
def raw(db_url: str):
    """An engine on the empty database that does not migrate by itself, to build old states with."""
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine
    engine.dispose()


def test_upgrade_from_empty_gives_the_models(db_url):
    engine = get_engine(db_url)
    assert version(engine) == head()
    assert schema_differences(engine) == []


def test_revision_1_is_the_models_without_the_columns_added_since(raw):
    upgrade(raw, "0001")
    assert version(raw) == "0001"
    assert sorted((diff[0], diff[2], diff[3].name) for diff in schema_differences(raw)) == [
        ("add_column", "programs", "val_ceiling"), ("add_column", "programs", "val_scored"),
        ("add_column", "programs", "val_size"), ("add_column", "runs", "attempt"),
        ("add_column", "runs", "backend"), ("add_column", "runs", "cpu_threads"),
        ("add_column", "runs", "matmul_gflops"), ("add_column", "runs", "model_params"),
        ("add_column", "steps", "peak_rss_mb"),
        ("add_column", "traces", "computed_prompt_tokens"), ("add_column", "trainings", "shortened"),
        ("add_column", "trainings", "tokens_cut"), ("remove_column", "programs", "adapter_path")]


@pytest.mark.parametrize("with_attempt", [False, True], ids=["before-issue-15", "after-issue-15"])
def test_a_create_all_database_is_stamped_upgraded_and_keeps_its_rows(raw, db_url, with_attempt):
    Base.metadata.create_all(raw)
    with raw.begin() as connection:  # create_all made no column later than runs.attempt
        for table, column in (("runs", "cpu_threads"), ("trainings", "shortened"), ("trainings", "tokens_cut"),
                              ("programs", "val_scored"), ("programs", "val_size"), ("programs", "val_ceiling"),
                              ("traces", "computed_prompt_tokens"), ("steps", "peak_rss_mb"),
                              ("runs", "model_params"), ("runs", "matmul_gflops"), ("runs", "backend")):
            connection.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        connection.execute(text("ALTER TABLE programs ADD COLUMN adapter_path TEXT"))  # dropped since
        if not with_attempt:
            connection.execute(text("ALTER TABLE runs DROP COLUMN attempt"))
        connection.execute(text("INSERT INTO experiments (id, name, created_at, grid) "
                                "VALUES (1, 'old', '2024-05-01 10:00:00', '{}')"))
        connection.execute(text(
            "INSERT INTO runs (id, experiment_id, task, model, strategy, seed, budget, config, config_hash, status, "
            "progress, cancel_requested, created_at, finished_at, test_score) VALUES (7, 1, 'iris', 'smollm2-135m', "
            "'p', 0, 'smoke', '{\"task\": \"iris\"}', 'h', 'done', 1.0, false, '2024-05-01 10:00:00', "
            "'2024-05-01 10:05:00', 0.5)"))
    assert "alembic_version" not in inspect(raw).get_table_names()

    engine = get_engine(db_url)
    assert version(engine) == head()
    assert schema_differences(engine) == []
    with engine.connect() as connection:
        row = connection.execute(text("SELECT task, status, test_score, attempt FROM runs WHERE id = 7")).one()
    assert tuple(row) == ("iris", "done", 0.5, 0)


def test_revision_7_records_the_backend_each_older_run_resolved_to(raw, db_url):
    """Before 0007 a run's config held the resolved backend: old runs keep showing what ran."""
    upgrade(raw, "0006")
    with raw.begin() as connection:
        connection.execute(text("INSERT INTO experiments (id, name, created_at, grid) "
                                "VALUES (1, 'old', '2024-05-01 10:00:00', '{}')"))
        for run_id, config in ((1, '{"task": "iris", "backend": "vllm"}'), (2, '{"task": "iris", "backend": "hf"}'),
                               (3, '{"task": "iris"}')):
            connection.execute(text(
                "INSERT INTO runs (id, experiment_id, task, model, strategy, seed, budget, config, config_hash, "
                "status, progress, cancel_requested, created_at) VALUES (:id, 1, 'iris', 'smollm2-135m', 'p', 0, "
                "'smoke', :config, 'h', 'done', 1.0, false, '2024-05-01 10:00:00')"), {"id": run_id, "config": config})
    engine = get_engine(db_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, backend FROM runs ORDER BY id")).all()
    assert [tuple(row) for row in rows] == [(1, "vllm"), (2, "hf"), (3, None)]


def snapshot(engine: Engine) -> tuple:
    tables = inspect(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return (rows, {t: [c["name"] for c in tables.get_columns(t)] for t in tables.get_table_names()})


def test_a_newer_database_is_refused_in_one_line_and_left_as_it_was(raw, db_url):
    upgrade(raw)
    with raw.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    if raw.dialect.name == "sqlite":  # as the newer version left it: in WAL mode, which opening would set
        with raw.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    before = snapshot(raw)
    raw.dispose()
    path = Path(make_url(db_url).database) if db_url.startswith("sqlite") else None
    data = path.read_bytes() if path else None

    with pytest.raises(DatabaseError) as refused:
        get_engine(db_url)
    message = str(refused.value)
    assert "\n" not in message
    assert f"schema revision 9999, newer than this code (head {head()}): upgrade BetterTogether Studio" in message

    for command in (["list"], ["show", "1"]):  # the URL in the environment: a password never reaches argv
        result = bt(*command, env={"BT_DATABASE_URL": db_url}, timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("error: database ") and "newer than this code" in result.stderr
    assert snapshot(raw) == before
    if path:
        assert path.read_bytes() == data


OPEN = """
import os, sys, time
from db.session import get_engine
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # start together, imports done
get_engine(os.environ["BT_DATABASE_URL"])
"""


def test_processes_opening_one_new_database_at_once_all_succeed(db_url):
    start = time.time() + 4  # past every process's imports, on 2 busy cores
    env = {**os.environ, "BT_DATABASE_URL": db_url}
    processes = [subprocess.Popen([sys.executable, "-c", OPEN, str(start)], cwd=REPO, env=env,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], errors
    engine = get_engine(db_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head()]
    assert schema_differences(engine) == []
