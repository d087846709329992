"""The tiny random-weight model goes through the real CLI, model resolution and transformers
backend, so machinery tests can rely on it."""

from pathlib import Path

from sqlalchemy import select

from db.models import Run, RunStatus, Trace
from db.session import session_factory
from tests.conftest import bt
from tests.tiny_model import TINY_MODEL_ENV, build_tiny_model


def test_building_again_returns_the_same_folder(tiny_model: Path):
    weights = (tiny_model / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tiny_model) == tiny_model
    assert (tiny_model / "model.safetensors").stat().st_mtime_ns == weights


def test_a_smoke_p_run_ends_done_and_every_call_ends_at_once(tiny_model: Path, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'tiny.sqlite'}"
    result = bt("--db", url, "run", "--task", "iris", "--model", str(tiny_model), "--strategy", "p",
                "--budget", "smoke", "--backend", "hf", env=TINY_MODEL_ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with session_factory(url)() as session:
        assert list(session.scalars(select(Run.status))) == [RunStatus.done]
        assert set(session.scalars(select(Trace.completion_tokens))) == {0}
