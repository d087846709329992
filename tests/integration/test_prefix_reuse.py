"""Prefix KV reuse on transformers decodes exactly what the plain padded batch decodes.

The real embedded model (fp32, CPU) generates greedily for Iris prompts behind the same
labeled demos, with suffixes of different lengths (a begun assistant turn among them, so
left padding sits between the shared prefix and the suffixes), once with `BT_PREFIX_REUSE=0`
and once with reuse: first from a fresh prefix, then from the prefix the last batch kept, then
from a kept prefix cropped to what a batch with fewer demos shares with it.
"""

from __future__ import annotations

import pytest

from bt_core import adapter
from bt_core.lm.base import Completion, Messages
from bt_core.lm.hf import HFLM
from bt_core.lm.models import resolve_model
from bt_core.tasks import get_task

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
