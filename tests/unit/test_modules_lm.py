import json
import threading
from pathlib import Path

import pytest

from bt_core import ChainOfThought, Example, Module, Predict
from bt_core.adapter import ParseError
from bt_core.lm.base import SamplingParams, adapter_fingerprint
from bt_core.lm.cache import LMCache
from bt_core.lm.scripted import ScriptedLM
from bt_core.modules import capture_trace
from tests.scripted import scripted_iris_lm


class TwoStep(Module):
    def __init__(self):
        self.hops = [Predict("question -> query"), Predict("question -> query")]
        self.answer = ChainOfThought("question, query -> answer")

    def forward(self, question):
        query = self.hops[0](question=question).query
        return self.answer(question=question, query=query)


def echo(messages, trained_on):
    return "Query: q\nReasoning: r\nAnswer: a"


def test_named_predictors_and_state_roundtrip(tmp_path):
    program = TwoStep()
    assert [n for n, _ in program.named_predictors()] == ["hops[0]", "hops[1]", "answer"]
    program.answer.demos = [Example(question="q", query="x", answer="y")]
    program.save(tmp_path / "p.json")
    loaded = TwoStep().load(tmp_path / "p.json")
    assert loaded.dump_state() == program.dump_state()
    assert json.loads((tmp_path / "p.json").read_text())["answer"]["signature"]["outputs"][0]["name"] == "reasoning"


def test_deepcopy_shares_the_lm_but_not_the_demos():
    program = TwoStep()
    lm = ScriptedLM(echo)
    program.set_lm(lm)
    copy = program.deepcopy()
    copy.answer.demos.append(Example(question="q"))
    assert copy.answer.lm is lm and program.answer.demos == []
    assert copy.bound_lm() is lm


def test_a_parse_failure_keeps_the_raw_completion_in_the_trace():
    program = ChainOfThought("question -> answer")
    lm = ScriptedLM(lambda m, t: "" if m[-1]["role"] == "assistant" else "I do not know")
    program.set_lm(lm)
    with capture_trace() as calls, pytest.raises(ParseError):
        program(question="why?")
    assert len(calls) == 1 and calls[0].outputs is None
    assert calls[0].completion.text == "I do not know\nAnswer:"  # asked once for the missing field, in vain
    assert lm.batches == [1, 1]


def test_a_turn_missing_a_field_is_continued_with_its_label():
    """The small model's prose answer gets one more call that starts at `Answer:`, as one traced call."""
    def script(messages, trained_on):
        if messages[-1]["role"] == "assistant":
            assert messages[-1]["content"] == "Because the sky is big.\nAnswer:"
            return " blue\nConfidence: high"
        return "Because the sky is big."

    program = ChainOfThought("question -> answer")
    program.set_lm(ScriptedLM(script))
    with capture_trace() as calls:
        prediction = program(question="What colour is the sky?")
    assert prediction.answer == "blue" and prediction.reasoning == ""
    (call,) = calls
    assert call.completion.text == "Because the sky is big.\nAnswer: blue"  # cut after the field's line
    assert call.parse_error is None and call.completion.completion_tokens == 5 + 2
    assert call.messages[-1]["role"] == "user"  # the trace keeps the conversation as the predictor built it


def test_concurrent_calls_coalesce_into_batches():
    lm = scripted_iris_lm(max_batch_size=8)
    messages = lambda i: [{"role": "user", "content": f"Petal Length: {i}"}]
    results = [None] * 16
    barrier = threading.Barrier(16)

    def call(i):
        barrier.wait()
        results[i] = lm.chat(messages(i), SamplingParams())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(lm.batches) == 16 and max(lm.batches) > 1 and max(lm.batches) <= 8
    assert all(r.text for r in results)


def test_cache_hits_cost_nothing_and_key_on_adapter_content(tmp_path):
    cache = LMCache(tmp_path / "cache.sqlite")
    lm = ScriptedLM(echo, cache=cache)
    batch = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "ho"}]]
    first = lm.generate(batch, SamplingParams())
    again = lm.generate(batch, SamplingParams())
    assert lm.batches == [2] and not any(c.cached for c in first) and all(c.cached for c in again)
    assert [c.text for c in again] == [c.text for c in first]
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "conversations.json").write_text("[]")
    tuned = lm.with_adapter(str(adapter))
    tuned.generate(batch, SamplingParams())
    assert tuned.batches == [2]  # another adapter is another model
    (adapter / "conversations.json").write_text("[[]]")
    retrained = lm.with_adapter(str(adapter))
    retrained.generate(batch, SamplingParams())
    assert retrained.batches == [2]  # same path, new content: no stale hit
    assert len(cache) == 6


def test_computed_prompt_tokens_default_to_those_sent_and_a_hit_computes_none(tmp_path):
    """The cache stores entries as before the field existed, so older code still reads them."""
    cache = LMCache(tmp_path / "cache.sqlite")
    lm = ScriptedLM(echo, cache=cache)
    batch = [[{"role": "user", "content": "hi there"}]]
    (first,) = lm.generate(batch, SamplingParams())
    (again,) = lm.generate(batch, SamplingParams())
    assert first.computed_prompt_tokens == first.prompt_tokens > 0 and again.computed_prompt_tokens == 0
    (stored,) = cache._db.execute("SELECT value FROM calls").fetchone()
    assert "computed_prompt_tokens" not in json.loads(stored)


def test_an_adapters_fingerprint_reads_its_files_once_per_version(tmp_path, monkeypatch):
    """Every call's cache key carries the fingerprint: an unchanged folder is not read again, and a
    rewritten file gives a new fingerprint."""
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    (tmp_path / "adapter_config.json").write_text("{}")
    reads = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or original(self))
    first = adapter_fingerprint(str(tmp_path))
    assert adapter_fingerprint(str(tmp_path)) == first and len(reads) == 2
    (tmp_path / "adapter_model.safetensors").write_bytes(b"other weights")
    assert adapter_fingerprint(str(tmp_path)) != first
