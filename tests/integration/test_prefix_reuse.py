"""Prefix KV reuse on transformers decodes exactly what the plain padded batch decodes, and the
backend's decoding (finished calls leave the batch) what transformers' own generate decodes.

The real embedded model (fp32, CPU) generates greedily for Iris prompts behind the same
labeled demos, with suffixes of different lengths (a begun assistant turn among them, so
left padding sits between the shared prefix and the suffixes), once with `BT_PREFIX_REUSE=0`
and once with reuse: first from a fresh prefix, then from the prefix the last batch kept, then
from a kept prefix cropped to what a batch with fewer demos shares with it.
"""

from __future__ import annotations

import pytest
import torch
from transformers import StoppingCriteriaList

from bt_core import adapter
from bt_core.lm.base import Completion, Messages, chat_prompt, prefill
from bt_core.lm.hf import HFLM, finish
from bt_core.lm.models import resolve_model
from bt_core.tasks import get_task
from tests.stock_generate import FieldStop

pytestmark = pytest.mark.integration

SIGNATURE = get_task("iris").program().classify.signature
PARAMS = adapter.sampling_params(SIGNATURE, 48)


def iris_prompts(demos: int, n: int) -> list[Messages]:
    splits = get_task("iris").load(8, 0, n, seed=0)
    prompts = [adapter.render(SIGNATURE, [dict(d) for d in splits.train[:demos]], e.inputs()) for e in splits.test]
    prompts[1] = [*prompts[1], {"role": "assistant", "content": "Reasoning: Let's think step by step. The petals"}]
    return prompts


def generate(lm: HFLM, prompts: list[Messages], monkeypatch, reuse: bool) -> list[Completion]:
    monkeypatch.setenv("BT_PREFIX_REUSE", "1" if reuse else "0")
    return lm.generate(prompts, PARAMS)


@pytest.fixture(scope="module")
def lm() -> HFLM:
    return HFLM(resolve_model("smollm2-135m"))  # no LM-call cache: every call generates


def test_reuse_decodes_what_the_padded_batch_decodes_and_computes_fewer_tokens(lm, monkeypatch):
    prompts = iris_prompts(demos=8, n=5)
    plain = generate(lm, prompts, monkeypatch, reuse=False)
    fresh = generate(lm, prompts, monkeypatch, reuse=True)
    kept = generate(lm, prompts, monkeypatch, reuse=True)
    for run in (fresh, kept):
        assert [(c.text, c.prompt_tokens, c.completion_tokens) for c in run] == [
            (c.text, c.prompt_tokens, c.completion_tokens) for c in plain]
    sent = sum(c.prompt_tokens for c in plain)
    assert all(c.computed_prompt_tokens == c.prompt_tokens for c in plain)
    assert sum(c.computed_prompt_tokens for c in kept) < sum(c.computed_prompt_tokens for c in fresh) < sent / 2
    assert any("Species:" in c.text for c in plain)  # real decoding, stopped at the last field's line


def test_a_kept_prefix_is_cropped_to_what_the_next_batch_shares(lm, monkeypatch):
    generate(lm, iris_prompts(demos=8, n=4), monkeypatch, reuse=True)
    fewer = iris_prompts(demos=5, n=4)
    plain = generate(lm, fewer, monkeypatch, reuse=False)
    assert [c.text for c in generate(lm, fewer, monkeypatch, reuse=True)] == [c.text for c in plain]


def test_a_batch_whose_prefixes_part_computes_each_once_and_decodes_what_the_padded_batch_decodes(lm, monkeypatch):
    """A teacher's batch: the call whose example is the first demo runs without that demo, so all
    the calls share only the system prompt; the others still share all three demos."""
    splits = get_task("iris").load(3, 0, 5, seed=0)
    demos = [dict(d) for d in splits.train]
    prompts = [adapter.render(SIGNATURE, demos, e.inputs()) for e in splits.test]
    prompts.insert(2, adapter.render(SIGNATURE, demos[1:], splits.train[0].inputs()))
    plain = generate(lm, prompts, monkeypatch, reuse=False)
    grouped = generate(lm, prompts, monkeypatch, reuse=True)
    assert [(c.text, c.prompt_tokens) for c in grouped] == [(c.text, c.prompt_tokens) for c in plain]
    assert sum(c.computed_prompt_tokens for c in grouped) < sum(c.prompt_tokens for c in plain) / 2


def test_the_backend_decodes_what_transformers_generate_decodes(lm, monkeypatch):
    """generate runs every row until the last stops; the backend lets finished rows go. Same texts."""
    prompts = iris_prompts(demos=3, n=6)
    ours = generate(lm, prompts, monkeypatch, reuse=False)
    tok, model = lm.tokenizer, lm.model()
    batch = tok([chat_prompt(tok, m) for m in prompts], add_special_tokens=False, padding=True, return_tensors="pt")
    width, prefills = batch.input_ids.shape[1], [prefill(m) for m in prompts]
    stop = StoppingCriteriaList([FieldStop(tok, width, PARAMS.stop_after_field, prefills)])
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=PARAMS.max_new_tokens, do_sample=False, temperature=None,
                             top_p=None, top_k=None, pad_token_id=tok.pad_token_id, stopping_criteria=stop)
    stock = [finish(tok, tok.decode(row, skip_special_tokens=True), 0, 0.0, PARAMS, p).text
             for row, p in zip(out[:, width:], prefills)]
    assert [c.text for c in ours] == stock
    assert len({c.completion_tokens for c in ours}) > 1  # rows finished apart: some left the batch early
