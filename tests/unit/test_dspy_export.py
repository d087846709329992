"""The DSPy export: a program's state loads into real DSPy programs of the same shape."""

import json

import dspy
import pytest

from bt_core.modules import Example, Module, Predict, demo_from
from bt_core.serve.export import dspy_state
from bt_core.tasks.hotpotqa import HOPS, MultiHop


class DSPyMultiHop(dspy.Module):
    """HotPotQA's program as a DSPy user writes it: the same attribute names and predictor kinds."""

    def __init__(self) -> None:
        super().__init__()
        self.generate_query = [dspy.ChainOfThought("context, question -> search_query") for _ in range(HOPS)]
        self.generate_answer = dspy.ChainOfThought("context, question -> answer")


def _optimized_multihop() -> MultiHop:
    program = MultiHop(retriever=None)
    source = Example(question="Who wrote it?", answer="Ann").with_inputs("question")
    first = program.generate_query[0]
    first.demos = [demo_from(source, {"context": "[1] «A» text", "question": "Who wrote it?",
                                      "reasoning": "the author is missing", "search_query": "A author"}),
                   demo_from(source, dict(source))]  # a labeled demo: the example itself, no reasoning
    program.generate_answer.signature = program.generate_answer.signature.with_instructions("Answer briefly.")
    return program


def test_a_multihop_program_loads_into_dspy_with_its_demos_and_instructions(tmp_path):
    ours = _optimized_multihop()
    path = tmp_path / "program.dspy.json"
    path.write_text(json.dumps(dspy_state(ours.dump_state())))
    theirs = DSPyMultiHop()
    theirs.load(str(path))
    names = [name for name, _ in theirs.named_predictors()]
    assert names == ["generate_query[0].predict", "generate_query[1].predict", "generate_answer.predict"]
    first = theirs.generate_query[0].predict
    bootstrapped, labeled = first.demos
    assert bootstrapped == {"context": "[1] «A» text", "question": "Who wrote it?",
                            "reasoning": "the author is missing", "search_query": "A author", "augmented": True}
    assert labeled == {"question": "Who wrote it?", "answer": "Ann"}  # a plain example, our _source left out
    assert theirs.generate_query[1].predict.demos == []
    assert theirs.generate_answer.predict.signature.instructions == "Answer briefly."
    assert first.signature.instructions == ours.generate_query[0].signature.instructions
    descriptions = [f.json_schema_extra["desc"] for f in first.signature.fields.values()]
    assert descriptions == [f.desc for f in (*ours.generate_query[0].signature.inputs,
                                             *ours.generate_query[0].signature.outputs)]
    # DSPy's own adapter puts the bootstrapped demo into the prompt it sends
    messages = dspy.ChatAdapter().format(first.signature, first.demos, {"context": "[1] «B»", "question": "Q?"})
    assert any("A author" in m["content"] for m in messages)


class Classifier(Module):
    def __init__(self) -> None:
        self.label = Predict("text -> label")


def test_a_plain_predict_keeps_its_name_and_a_program_of_another_shape_refuses_the_file(tmp_path):
    ours = Classifier()
    ours.label.demos = [demo_from(Example(text="hi", label="greeting").with_inputs("text"),
                                  {"text": "hi", "label": "greeting"})]
    state = dspy_state(ours.dump_state())
    assert set(state) == {"label", "metadata"}
    path = tmp_path / "program.dspy.json"
    path.write_text(json.dumps(state))

    class DSPyClassifier(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.label = dspy.Predict("text -> label")

    loaded = DSPyClassifier()
    loaded.load(str(path))
    assert loaded.label.demos == [{"text": "hi", "label": "greeting", "augmented": True}]
    with pytest.raises(KeyError):
        DSPyMultiHop().load(str(path))
