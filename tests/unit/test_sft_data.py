"""What fine-tuning learns from: the loss mask, the shortening of long conversations (with the
embedded model's real tokenizer), and the rule that only passing traces become training data."""

import pytest
from transformers import AutoTokenizer

from bt_core.lm.lora import tokenize_for_sft
from bt_core.lm.scripted import ScriptedLM
from bt_core.optimizers import BootstrapFewShot, BootstrapFinetune
from bt_core.tasks import get_task

SYSTEM = "Answer the multi-hop question from the passages. KEEP-THESE-INSTRUCTIONS"
COMPLETION = "Reasoning: the passage says so\nAnswer: Paris"


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def conversation(demos: int, passage_words: int) -> list[dict[str, str]]:
    context = "Context: " + " ".join(f"[{i % 9}] «Title {i}» word{i}" for i in range(passage_words))
    messages = [{"role": "system", "content": SYSTEM}]
    for d in range(demos):
        messages += [{"role": "user", "content": f"{context}\nQuestion: demo question {d}?"},
                     {"role": "assistant", "content": f"Reasoning: demo {d}\nAnswer: demo answer {d}"}]
    return [*messages, {"role": "user", "content": f"{context}\nQuestion: where is it?"},
            {"role": "assistant", "content": COMPLETION}]


def labelled_text(tokenizer, example) -> str:
    return tokenizer.decode([i for i, label in zip(example.input_ids, example.labels) if label != -100])


def test_only_the_completion_carries_labels(tokenizer):
    messages = conversation(demos=1, passage_words=20)
    example = tokenize_for_sft(tokenizer, messages, 1024)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    prompt_len = len(tokenizer(prompt, add_special_tokens=False).input_ids)
    assert example.labels[:prompt_len] == [-100] * prompt_len
    assert example.labels[prompt_len:] == example.input_ids[prompt_len:]
    assert labelled_text(tokenizer, example) == COMPLETION + tokenizer.eos_token
    assert not example.shortened and example.tokens_cut == 0


def test_a_long_conversation_loses_its_oldest_demo_first(tokenizer):
    messages = conversation(demos=2, passage_words=40)
    whole = tokenize_for_sft(tokenizer, messages, 4096)
    one_demo = tokenize_for_sft(tokenizer, [messages[0], *messages[3:]], 4096)
    example = tokenize_for_sft(tokenizer, messages, len(one_demo.input_ids))
    assert example.input_ids == one_demo.input_ids and example.labels == one_demo.labels
    assert example.shortened and example.tokens_cut == len(whole.input_ids) - len(one_demo.input_ids)


def test_a_long_conversation_keeps_its_instructions_question_and_completion(tokenizer):
    messages = conversation(demos=2, passage_words=400)
    whole = tokenize_for_sft(tokenizer, messages, 100_000)
    example = tokenize_for_sft(tokenizer, messages, 300)
    text = tokenizer.decode(example.input_ids)
    assert len(example.input_ids) <= 300 and example.shortened
    assert example.tokens_cut == len(whole.input_ids) - len(example.input_ids)
    assert SYSTEM in text and "Question: where is it?" in text and "demo question" not in text
    assert "Context: [0] «Title 0» word0" in text and "word399" not in text
    assert labelled_text(tokenizer, example) == COMPLETION + tokenizer.eos_token


IRIS = get_task("iris")
SPLITS = IRIS.load(15, 15, 30, seed=0)


def always_virginica(messages, trained_on) -> str:
    """Right on virginica, recognisably wrong on the rest: a failing trace names its guess."""
    if messages[-1]["role"] == "assistant" or len(messages) < 3:
        return "I am not sure."
    return "Reasoning: a guess\nSpecies: virginica"


def test_fine_tuning_learns_only_from_passing_traces(tmp_path):
    program = IRIS.program()
    program.set_lm(ScriptedLM(always_virginica))
    prompted = BootstrapFewShot(IRIS.metric, max_bootstrapped_demos=1, max_labeled_demos=2).compile(
        program, trainset=SPLITS.train)
    tuned = BootstrapFinetune(IRIS.metric, tmp_path).compile(prompted, trainset=SPLITS.train)
    trained_on = tuned.bound_lm()._trained_on
    virginica = sum(e["species"] == "virginica" for e in SPLITS.train)
    assert len(trained_on) == virginica and 0 < virginica < len(SPLITS.train)
    assert all(c[-1]["content"].endswith("Species: virginica") for c in trained_on)
