"""HotPotQA: loader over the real dev file, answer normalization and details, missing data, and the
two-hop program end to end with a scripted LM."""

from __future__ import annotations

import os

import pytest

from bt_core.adapter import one_line
from bt_core.lm.scripted import ScriptedLM
from bt_core.modules import Example, Prediction, capture_trace
from bt_core.retrieval import Passage
from bt_core.tasks import get_task
from bt_core.tasks.hotpotqa import (
    _example,
    _from_hub_row,
    f1_score,
    format_context,
    normalize_answer,
    source_rows,
    split_sources,
)


@pytest.fixture(scope="module")
def task():
    return get_task("hotpotqa")


@pytest.fixture(scope="module")
def program(task, tmp_path_factory):
    """Built with BT_HOME in a temporary folder, so the BM25 index is not written into the repo."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BT_HOME", str(tmp_path_factory.mktemp("bt_home")))
        return task.program()


@pytest.fixture(scope="module")
def dev_file() -> list[dict]:
    (rows,) = source_rows(os.environ["BT_DATA_DIR"])  # offline: one source
    return rows


def questions(examples: list[Example]) -> set[str]:
    return {e["question"] for e in examples}


def test_the_paper_budget_uses_the_whole_offline_file(task):
    paper = task.sizes["paper"]
    assert paper.train + paper.val + paper.test == 1578  # the whole offline file


def test_splits_mix_bridge_and_comparison_questions(task):
    splits = task.load(30, 25, 50, seed=0)
    for split in (splits.train, splits.val, splits.test):
        assert {e["type"] for e in split} == {"bridge", "comparison"}


def test_examples_carry_the_question_as_input_and_two_gold_titles(task):
    example = task.load(8, 6, 8, seed=0).train[0]
    assert example.inputs() == {"question": example["question"]}
    assert len(example["gold_titles"]) == 2 and example["answer"]


def test_hub_rows_become_file_rows(dev_file):
    """The hub stores context and supporting facts as columns; the loader turns them back into rows."""
    row = dev_file[0]
    hub_row = {**{k: row[k] for k in ("question", "answer", "type")}, "id": "x", "level": "hard",
               "context": {"title": [t for t, _ in row["context"]], "sentences": [s for _, s in row["context"]]},
               "supporting_facts": {"title": [t for t, _ in row["supporting_facts"]],
                                    "sent_id": [i for _, i in row["supporting_facts"]]}}
    assert _from_hub_row(hub_row) == {k: row[k] for k in ("question", "answer", "type", "supporting_facts", "context")}


def test_with_the_hubs_two_splits_train_and_val_come_from_train_and_test_from_validation(dev_file):
    hub_train, hub_validation = [_example(r) for r in dev_file[:1000]], [_example(r) for r in dev_file[1000:]]
    splits = split_sources([hub_train, hub_validation], 20, 15, 30, seed=1)
    assert questions(splits.train) | questions(splits.val) <= questions(hub_train)
    assert questions(splits.test) <= questions(hub_validation) and len(splits.test) == 30
    assert questions(split_sources([hub_train, hub_validation], 20, 15, 30, seed=2).test) == questions(splits.test)


def test_a_row_without_context_is_named(task, tmp_path, monkeypatch):
    (tmp_path / "hotpotqa").mkdir()
    (tmp_path / "hotpotqa" / "dev_distractor.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    monkeypatch.setenv("BT_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="line 1 lacks type, supporting_facts, context"):
        task.load(1, 0, 0, seed=0)


# Gold answers from the dev file, against answers a model plausibly writes.
@pytest.mark.parametrize("gold, predicted, exact", [
    ("yes", "Yes.", 1.0), ("3,677 seated", "3,677 seated", 1.0),
    ("the North Atlantic Conference", "North Atlantic Conference", 1.0),
    ("Pedro Rodríguez", "pedro rodríguez", 1.0), ("World's Best Goalkeeper", "Worlds best goalkeeper", 1.0),
    ("from 1986 to 2013", "1986 to 2013", 0.0), ("Chief of Protocol", "Chief of Protocol of the United States", 0.0),
    ("no", "yes", 0.0),
])
def test_exact_match_after_squad_normalization(task, gold, predicted, exact):
    assert task.metric(Example(answer=gold), Prediction(answer=predicted)) == exact


def test_f1_gives_partial_credit_but_not_for_yes_no():
    assert f1_score("1986 to 2013", "from 1986 to 2013") == pytest.approx(2 * 0.75 / 1.75)
    assert f1_score("no, it is not", "no") == 0.0
    assert f1_score("Greenwich Village", "Greenwich Village, New York City") == pytest.approx(2 * 0.4 / 1.4)
    assert normalize_answer("  The  Kansas Song! ") == "kansas song"


def test_details_measure_recall_of_gold_titles_per_hop(task):
    example = Example(answer="Latin", gold_titles=["Haymo of Faversham", "Recovery of Aristotle"])
    prediction = Prediction(answer="latin", titles_hop1=["Haymo of Faversham", "X"], titles_hop2=["Y"])
    assert task.details(example, prediction) == {"f1": 1.0, "recall_hop1": 0.5, "recall_hop2": 0.0, "recall": 0.5}
    assert task.details(example, Prediction())["recall"] == 0.0


def test_context_is_one_numbered_line():
    context = format_context([Passage("Ed Wood", "A filmmaker.\nBorn 1924."), Passage("Tim Burton", "A director.")])
    assert one_line(context) == "[1] «Ed Wood» A filmmaker. Born 1924. [2] «Tim Burton» A director."
    assert format_context([]) == "(no passages yet)"


def test_program_modules_and_copies(program):
    assert [name for name, _ in program.named_predictors()] == \
        ["generate_query[0]", "generate_query[1]", "generate_answer"]
    assert program.deepcopy().retriever is program.retriever


def test_program_end_to_end_with_a_scripted_lm(task, program):
    """Hop 1 searches the question, hop 2 the gold title it missed; the answer module echoes the gold answer."""
    examples = task.load(8, 6, 8, seed=0).test
    by_question = {one_line(e["question"]): e for e in examples}

    def script(messages, trained_on):
        fields = dict(line.split(": ", 1) for line in messages[-1]["content"].splitlines())
        example = by_question[fields["Question"]]
        if "Search Query:" not in messages[0]["content"]:
            return f"Reasoning: the passages say so.\nAnswer: {example['answer']}"
        missing = [t for t in example["gold_titles"] if f"«{t}»" not in fields["Context"]]
        first_hop = fields["Context"] == "(no passages yet)"
        query = example["question"] if first_hop or not missing else missing[0]
        return f"Reasoning: look it up.\nSearch Query: {query}"

    program.set_lm(ScriptedLM(script))
    names = {id(p): name for name, p in program.named_predictors()}
    hop1, both = 0.0, 0.0
    for example in examples:
        with capture_trace() as calls:
            prediction = program(**example.inputs())
        assert [names[id(c.predictor)] for c in calls] == \
            ["generate_query[0]", "generate_query[1]", "generate_answer"]
        assert all(f"«{title}»" in calls[1].inputs["context"] for title in prediction["titles_hop1"])
        assert len(prediction["titles_hop1"]) == len(prediction["titles_hop2"]) == 3
        assert task.metric(example, prediction) == 1.0
        details = task.details(example, prediction)
        hop1, both = hop1 + details["recall_hop1"], both + details["recall"]
    assert both > hop1  # the second hop found gold passages the first missed
