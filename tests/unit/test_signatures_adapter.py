import pytest

from bt_core import adapter
from bt_core.adapter import ParseError
from bt_core.lm.stopping import field_closed, truncate_after_field
from bt_core.signatures import Field, Signature

SIG = Signature.parse("question, context -> reasoning, answer", instructions="Answer briefly.")


def test_parse_signature_string():
    assert SIG.input_names == ["question", "context"]
    assert SIG.output_names == ["reasoning", "answer"]
    assert Signature.from_dict(SIG.to_dict()) == SIG


@pytest.mark.parametrize("spec", ["question answer", "a -> b -> c", "a, 1x -> b", "a -> a", "a ->"])
def test_bad_signatures_are_rejected(spec):
    with pytest.raises(ValueError):
        Signature.parse(spec)


def test_render_puts_demos_as_prior_turns():
    demos = [{"question": "2+2?", "context": "math", "reasoning": "add", "answer": "4"},
             {"question": "capital of France?", "context": "geo", "answer": "Paris"}]  # labeled: no reasoning
    messages = adapter.render(SIG, demos, {"question": "3+3?", "context": "math"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "Answer briefly." in messages[0]["content"]
    assert messages[2]["content"] == "Reasoning: add\nAnswer: 4"
    assert messages[4]["content"] == "Answer: Paris"
    assert messages[-1]["content"] == "Question: 3+3?\nContext: math"


@pytest.mark.parametrize("completion, expected", [
    ("Reasoning: it is 6\nAnswer: 6", {"reasoning": "it is 6", "answer": "6"}),
    ("**Answer:** 6", {"reasoning": "", "answer": "6"}),
    ("- reasoning: a\n  more\nanswer: 6", {"reasoning": "a more", "answer": "6"}),
    ("Answer:\nAnswer: 6", {"reasoning": "", "answer": "6"}),  # an empty label line does not end the search
])
def test_parse_tolerates_what_small_models_write(completion, expected):
    assert adapter.parse(SIG, completion) == expected


@pytest.mark.parametrize("completion", ["", "The answer is six.", "Reasoning: six\nAnswer:   "])
def test_parse_failure_is_a_parse_error(completion):
    with pytest.raises(ParseError, match="answer"):
        adapter.parse(SIG, completion)


def test_stop_condition_waits_for_the_end_of_the_last_field_line():
    assert not field_closed("Reasoning: x\nAnswer: 4", "Answer")
    assert field_closed("Reasoning: x\nAnswer: 4\n", "Answer")
    assert not field_closed("Answer:\n", "Answer")
    assert truncate_after_field("Answer: 4\nQuestion: more", "Answer") == "Answer: 4"


@pytest.mark.parametrize("completion, turn", [
    ("The answer is six.", "The answer is six.\nAnswer:"),
    ("", "Answer:"),
    ("Reasoning: add them\nAnswer:  \n", "Reasoning: add them\nAnswer:"),
])
def test_a_turn_missing_a_field_continues_at_its_label(completion, turn):
    assert adapter.continue_turn(SIG, completion) == turn
    assert adapter.parse(SIG, turn + " 6")["answer"] == "6"


def test_the_stop_condition_sees_a_continued_turn():
    prefill = "The answer is six.\nAnswer:"
    assert field_closed(prefill + " 6\n", "Answer") and not field_closed(prefill, "Answer")
    assert truncate_after_field(" 6\nQuestion: more", "Answer", prefill) == " 6"
    assert truncate_after_field("\nQuestion: more", "Answer", "Answer: 6") == ""


def test_field_labels():
    assert Field("petal_length").label == "Petal Length"
