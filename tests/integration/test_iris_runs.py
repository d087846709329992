"""The whole path with the real embedded model: worker, runner, optimizers, LoRA, database."""

from __future__ import annotations

import json

import pytest
import torch
from sqlalchemy import func, select

from bt_core.tasks import get_task
from db.models import ExampleScore, Program, Run, RunStatus, Step, Trace, Training
from db.session import session_factory
from tests.conftest import SMOKE_STRATEGIES, bt

pytestmark = pytest.mark.integration


def runs_by_strategy(url: str) -> dict[str, Run]:
    with session_factory(url)() as session:
        return {r.strategy: r for r in session.scalars(select(Run))}


def test_every_smoke_strategy_completes(filled_db):
    runs = runs_by_strategy(filled_db)
    assert sorted(runs) == sorted(SMOKE_STRATEGIES)
    for run in runs.values():
        assert run.status == RunStatus.done, run.error
        assert run.test_score is not None and run.progress == 1.0


def test_p_w_p_records_every_step(filled_db):
    run = runs_by_strategy(filled_db)["p -> w -> p"]
    test_size = get_task("iris").sizes["smoke"].test
    with session_factory(filled_db)() as session:
        steps = session.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.index)).all()
        assert [(s.kind, s.label) for s in steps] == [("vanilla", "vanilla"), ("p", "p"), ("w", "p -> w"),
                                                      ("p", "p -> w -> p")]
        for step in steps:
            traces = session.scalar(select(func.count(Trace.id)).where(Trace.step_id == step.id))
            tests = session.scalar(select(func.count(ExampleScore.id)).where(
                ExampleScore.step_id == step.id, ExampleScore.split == "test"))
            assert traces > 0 and tests == test_size, step.label
        for p_step in (steps[1], steps[3]):
            candidates = session.scalars(select(Program).where(Program.step_id == p_step.id,
                                                               Program.role == "candidate")).all()
            assert len(candidates) >= 4 and all(c.val_score is not None for c in candidates)
            assert any(c.state["classify"]["demos"] for c in candidates)
            assert sum(c.chosen for c in candidates) == 1
        training = session.scalar(select(Training).where(Training.step_id == steps[2].id))
        assert training.examples > 0 and len(training.losses) > 0 and training.seconds > 0
        assert steps[2].adapter_path == training.adapter_path == steps[3].adapter_path


def test_the_saved_adapter_changes_the_model(filled_db):
    from bt_core.lm.hf import HFLM
    from bt_core.lm.models import resolve_model

    with session_factory(filled_db)() as session:
        step = session.scalar(select(Step).join(Run).where(Run.strategy == "p -> w -> p", Step.kind == "w"))
        messages = session.scalar(select(Trace.messages).where(Trace.step_id == step.id, Trace.split == "test"))
    base_lm = HFLM(resolve_model("smollm2-135m"))
    tuned_lm = base_lm.with_adapter(step.adapter_path)
    tokenizer = base_lm.tokenizer
    ids = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                    return_tensors="pt").input_ids
    with torch.inference_mode():
        base_logits, tuned_logits = base_lm.model()(ids).logits, tuned_lm.model()(ids).logits
    assert (base_logits - tuned_logits).abs().max() > 1e-2


def test_cli_show_list_and_export(filled_db, tmp_path):
    run = runs_by_strategy(filled_db)["p -> w -> p"]
    shown = bt("--db", filled_db, "show", str(run.id))
    assert shown.returncode == 0 and "p -> w -> p" in shown.stdout and "test" in shown.stdout
    listed = bt("--db", filled_db, "list")
    assert listed.stdout.count("done") == 3
    assert "prompt tokens sent" not in shown.stdout
    profiled = bt("--db", filled_db, "show", str(run.id), "--profile")
    assert profiled.returncode == 0 and "prompt tokens sent" in profiled.stdout
    assert "ceiling" in profiled.stdout and "model 134.5M parameters" in profiled.stdout
    exported = bt("--db", filled_db, "export", str(run.id), str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    program = json.loads((tmp_path / "out" / "program.json").read_text())
    assert program["strategy"] == "p -> w -> p" and "classify" in program["modules"]
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
    from peft import PeftConfig
    assert PeftConfig.from_pretrained(str(tmp_path / "out" / "adapter")).r == 8


def test_an_exported_iris_program_loads_into_dspy(filled_db, tmp_path):
    import dspy

    run = runs_by_strategy(filled_db)["p -> w -> p"]
    assert bt("--db", filled_db, "export", str(run.id), str(tmp_path)).returncode == 0
    ours = json.loads((tmp_path / "program.json").read_text())["modules"]["classify"]
    assert ours["demos"], "the p step gave the final program demos"

    class Iris(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classify = dspy.ChainOfThought("sepal_length, sepal_width, petal_length, petal_width -> species")

    theirs = Iris()
    theirs.load(str(tmp_path / "program.dspy.json"))
    predict = theirs.classify.predict
    assert predict.signature.instructions == ours["signature"]["instructions"]
    assert [{k: v for k, v in demo.items() if k != "augmented"} for demo in predict.demos] == \
        [{k: v for k, v in demo.items() if k != "_source"} for demo in ours["demos"]]
    assert [bool(demo.get("augmented")) for demo in predict.demos] == [bool(d.get("reasoning")) for d in ours["demos"]]


def test_cli_run_in_the_foreground(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    result = bt("--db", url, "run", "--task", "iris", "--strategy", "vanilla", "--budget", "smoke")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("run 1: iris / smollm2-135m / vanilla")
    assert "step 0 vanilla" in result.stdout and "done" in result.stdout
