"""GSM8K and HotPotQA end to end with the real embedded model: p -> w -> p at the smoke budget,
every module of every step traced, HotPotQA's per-hop retrieval measures stored and shown."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bt_core.tasks import get_task
from db import queries
from db.models import ExampleScore, Program, Run, RunStatus, Step, Trace, Training
from db.session import session_factory

pytestmark = pytest.mark.integration

MODULES = {"gsm8k": {"solve"}, "hotpotqa": {"generate_query[0]", "generate_query[1]", "generate_answer"}}


def run_of(url: str, task: str) -> Run:
    with session_factory(url)() as session:
        return session.scalar(select(Run).where(Run.task == task))


@pytest.mark.parametrize("task", sorted(MODULES))
def test_p_w_p_traces_every_module_in_every_step(multitask_db, task):
    """Each example runs its modules in order until one fails to parse. Zero-shot, the 135M model
    answers HotPotQA's hop questions in prose; asked once more at `Search Query:` (as DSPy's
    template adapter did) it writes a query, so both hops and the answer run and are traced."""
    run = run_of(multitask_db, task)
    assert run.status == RunStatus.done, run.error
    test_size = get_task(task).sizes["smoke"].test
    first = {"gsm8k": "solve", "hotpotqa": "generate_query[0]"}[task]
    with session_factory(multitask_db)() as session:
        steps = session.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.index)).all()
        assert [s.label for s in steps] == ["vanilla", "p", "p -> w", "p -> w -> p"]
        for step in steps:
            scores = session.scalars(select(ExampleScore).where(ExampleScore.step_id == step.id,
                                                                ExampleScore.split == "test")).all()
            assert len(scores) == test_size, step.label
            complete = 0
            for score in scores:
                modules = session.scalars(select(Trace.module).where(
                    Trace.program_id == score.program_id, Trace.split == "test",
                    Trace.example_index == score.example_index).order_by(Trace.position)).all()
                assert modules and modules[0] == first and set(modules) <= MODULES[task], step.label
                complete += set(modules) == MODULES[task]
                if score.error is None:  # a finished example ran every module
                    assert set(modules) == MODULES[task], step.label
                else:
                    assert score.error.startswith("parse error") and score.score == 0
            assert complete >= test_size / 2, f"{step.label}: {complete} of {test_size} examples ran every module"


@pytest.mark.parametrize("task", sorted(MODULES))
def test_the_w_step_trains_on_exactly_the_passing_teacher_calls_or_says_why_not(multitask_db, task):
    """A 135M model rarely solves these, so the w step may find no passing trace: then it keeps
    the weights and records why instead of failing the run."""
    run = run_of(multitask_db, task)
    with session_factory(multitask_db)() as session:
        step = session.scalar(select(Step).where(Step.run_id == run.id, Step.kind == "w"))
        teacher = session.scalar(select(Program.id).where(Program.step_id == step.id, Program.role == "teacher"))
        passing = session.scalars(select(ExampleScore.example_index).where(
            ExampleScore.program_id == teacher, ExampleScore.split == "train", ExampleScore.score == 1)).all()
        calls = session.scalar(select(func.count(Trace.id)).where(
            Trace.program_id == teacher, Trace.split == "train", Trace.example_index.in_(passing)))
        (training,) = session.scalars(select(Training).where(Training.step_id == step.id)).all()
        previous = session.scalar(select(Step.adapter_path).where(Step.run_id == run.id, Step.index == 1))
    assert training.examples == calls
    if calls:
        assert training.error is None and training.losses and step.adapter_path == training.adapter_path
    else:
        assert "none of the" in training.error and step.adapter_path == previous


def test_hotpotqa_stores_retrieval_recall_per_hop_for_every_example(multitask_db):
    run = run_of(multitask_db, "hotpotqa")
    db = session_factory(multitask_db)
    last = queries.evaluated_steps(db, run.id, "test")[-1]
    task = get_task("hotpotqa")
    sizes = task.sizes["smoke"]
    test_gold = [e["gold_titles"] for e in task.load(sizes.train, sizes.val, sizes.test, 0).test]
    for index, gold_titles in enumerate(test_gold):
        result = queries.example_result(db, last["program_id"], "test", index)
        assert set(result["details"]) == {"f1", "recall_hop1", "recall_hop2", "recall"}
        assert all(0 <= value <= 1 for value in result["details"].values())
        if result["prediction"]:  # a finished example names the titles each hop retrieved; recall counts them
            hops = [set(result["prediction"][f"titles_hop{h}"]) for h in (1, 2)]
            gold = set(gold_titles)
            assert all(len(titles) <= 3 for titles in hops)  # fewer when a query is only numbers or stopwords
            assert [result["details"][f"recall_hop{h}"] for h in (1, 2)] == [len(gold & t) / len(gold) for t in hops]
            assert result["details"]["recall"] == len(gold & (hops[0] | hops[1])) / len(gold)
        else:  # a failed one scores 0 on every measure
            assert set(result["details"].values()) == {0}
    means = queries.detail_means(db, run.id, "test")
    assert list(means.index) == [0, 1, 2, 3] and set(means.columns) == set(result["details"])
    assert means["recall"].max() > 0  # BM25 over the pooled paragraphs finds some gold titles


def test_gsm8k_has_no_secondary_measures(multitask_db):
    run = run_of(multitask_db, "gsm8k")
    assert queries.detail_means(session_factory(multitask_db), run.id, "test").empty
