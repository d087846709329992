"""A database left by a version before issue 15 (schema revision 0001) opened by this code:
upgraded on open, its runs shown by every page and the CLI, and its unfinished run resumed."""

from __future__ import annotations

import logging

import pytest
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select

from bt_core.serve.runner import run_to_end
from bt_core.serve.worker import claim
from db.migrate import head
from db.models import Run, RunStatus, Step, StepStatus
from db.session import get_engine, session_factory
from tests.conftest import bt
from tests.old_database import FINISHED, UNFINISHED, old_database
from tests.scripted import scripted_iris_lm
from tests.ui.test_pages import shown_text, start
from ui.common import PAGES

pytestmark = pytest.mark.ui


@pytest.fixture
def old_url(tmp_path) -> str:
    return old_database(tmp_path / "old.sqlite")


def revision(url: str) -> str | None:
    """Read without migrating."""
    engine = create_engine(url)
    with engine.connect() as connection:
        found = MigrationContext.configure(connection).get_current_revision()
    engine.dispose()
    return found


def test_the_old_database_is_at_revision_1_until_opened(old_url):
    assert revision(old_url) == "0001"
    get_engine(old_url)
    assert revision(old_url) == head()


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_shows_the_old_runs(page, old_url, monkeypatch):
    app = start(old_url, monkeypatch, page, run=FINISHED)
    assert not app.error, app.error[0].value
    assert revision(old_url) == head()  # the dashboard upgraded it on open
    if page == "runs":
        assert f"Run #{FINISHED} · p -> w" in shown_text(app)
        assert "best on validation: step 0 (vanilla, val 50.0%)" in shown_text(app)


def test_the_cli_shows_an_old_run(old_url):
    result = bt("--db", old_url, "show", str(FINISHED), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"run {FINISHED} [done] iris / smollm2-135m / p -> w / seed 0 / hf"
    assert "step 2 p -> w" in result.stdout
    # every step scored 50% on validation: the first of equals is the best on record
    assert "result: the final step's program; best on validation: step 0 vanilla (val 50.0%)" in result.stdout


def test_an_old_unfinished_run_resumes_to_the_end(old_url, monkeypatch, caplog):
    monkeypatch.setattr("bt_core.serve.runner.load_lm", lambda *args: scripted_iris_lm())
    sessions = session_factory(old_url)
    with sessions() as session:
        step_0 = session.scalars(select(Step).where(Step.run_id == UNFINISHED)).one()
    lease = claim(sessions, "test:1", UNFINISHED)
    assert lease is not None and lease.attempt == 1
    with caplog.at_level(logging.WARNING, logger="bt_core.serve.config"):
        assert run_to_end(lease) == RunStatus.done
    assert "ignoring settings this version no longer has: temperature" in caplog.text
    with sessions() as session:
        run = session.get(Run, UNFINISHED)
        steps = [(s.index, s.status, s.started_at) for s in run.steps]
        assert run.error is None and run.test_score is not None
    assert steps[0] == (0, StepStatus.done, step_0.started_at)  # kept from before, not redone
    assert [s[:2] for s in steps[1:]] == [(1, StepStatus.done)]


def test_the_dashboard_refuses_a_newer_database_in_one_line(old_url, monkeypatch):
    engine = create_engine(old_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    app = start(old_url, monkeypatch)
    assert "is at schema revision 9999, newer than this code" in app.error[0].value
    assert revision(old_url) == "9999"
