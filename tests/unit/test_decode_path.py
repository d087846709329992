"""The transformers backend's decoding path on CPU: grouped-head attention and the growing cache.

Both exist for speed (benchmarks/decode_speed.py), so what these tests hold is that they compute
what transformers' stock path computes, and that they do skip the copies they exist to skip: the
key/value heads repeated for every masked attention call, and the whole cache copied per token.
A tiny random Llama with grouped key/value heads and a left-padded batch exercises both.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations import sdpa_attention

from bt_core.lm import attention, hf, kv_cache, prefix
from bt_core.lm.models import resolve_model
from tests.tiny_model import build_tiny_model

PAD = 0


@pytest.fixture(scope="module")
def grouped_model() -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=96, max_position_embeddings=256,
                         pad_token_id=PAD, bos_token_id=1, eos_token_id=2, attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def padded_batch(lengths: list[int]) -> dict[str, torch.Tensor]:
    """Left-padded rows of random tokens (never the end token), as a batch of calls of different lengths."""
    generator = torch.Generator().manual_seed(1)
    width = max(lengths)
    ids = torch.full((len(lengths), width), PAD)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, width - length:] = torch.randint(3, 96, (length,), generator=generator)
        mask[row, width - length:] = 1
    return {"input_ids": ids, "attention_mask": mask}


def greedy(model: LlamaForCausalLM, batch: dict, tokens: int, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                              pad_token_id=PAD, **kwargs)


@pytest.fixture
def stock_attention(grouped_model):
    yield grouped_model
    grouped_model.set_attn_implementation("sdpa")


def test_grouped_attention_gives_the_stock_logits_on_a_padded_batch(stock_attention):
    model, batch = stock_attention, padded_batch([5, 12, 9])
    with torch.no_grad():
        stock = model(**batch).logits
        model.set_attn_implementation(attention.NAME)
        grouped = model(**batch).logits
    real = batch["attention_mask"].bool()  # a pad position's logits are never read
    torch.testing.assert_close(grouped[real], stock[real], rtol=1e-5, atol=1e-5)


def test_grouped_attention_never_repeats_key_value_heads(stock_attention, monkeypatch):
    """Stock sdpa on CPU copies every key/value head per query head whenever a mask is present."""
    repeats = []
    original = sdpa_attention.repeat_kv
    monkeypatch.setattr(sdpa_attention, "repeat_kv", lambda states, n: repeats.append(n) or original(states, n))
    model, batch = stock_attention, padded_batch([4, 10])
    greedy(model, batch, 3)
    assert repeats, "the stock path was expected to repeat heads: the test no longer measures anything"
    repeats.clear()
    model.set_attn_implementation(attention.NAME)
    stock_free = greedy(model, batch, 3)
    assert repeats == []
    model.set_attn_implementation("sdpa")
    torch.testing.assert_close(stock_free, greedy(model, batch, 3))


def test_the_growing_cache_decodes_what_the_stock_cache_decodes(grouped_model):
    batch = padded_batch([6, 15, 11])
    stock = greedy(grouped_model, batch, 24)
    assert torch.equal(greedy(grouped_model, batch, 24, past_key_values=kv_cache.growing_cache(grouped_model, 24)),
                       stock)
    # too little room: the buffer grows as often as it must, and the answer stays the same
    assert torch.equal(greedy(grouped_model, batch, 24, past_key_values=kv_cache.growing_cache(grouped_model, 5)),
                       stock)


def test_the_growing_cache_allocates_once_per_layer_when_its_room_suffices(grouped_model, monkeypatch):
    """DynamicLayer concatenates, so copies its whole cache, at every token; here a token is one write."""
    buffers = []
    original = kv_cache._buffer
    monkeypatch.setattr(kv_cache, "_buffer", lambda *args: buffers.append(args[-1]) or original(*args))
    cache = kv_cache.growing_cache(grouped_model, 20)
    greedy(grouped_model, padded_batch([7, 3]), 20, past_key_values=cache)
    layers = grouped_model.config.num_hidden_layers
    assert buffers == [7 + 20] * (2 * layers)  # keys and values, per layer, the prompt and its room
    assert cache.get_seq_length() == 7 + 20 - 1  # the last token is returned, never fed back


def test_a_prefix_cache_continues_into_its_room(grouped_model):
    """The prefix path (prefix.py) hands generate a growing cache that already holds the shared prefix."""
    shared, tails = [5, 9, 14, 22, 31, 40], [[50, 51], [60, 61, 62, 63]]
    rows = [shared + tail for tail in tails]
    prefix.forget()
    cache, computed = prefix.prefix_cache(grouped_model, shared, len(rows), room=4 + 8)
    assert computed == len(shared) and cache.get_seq_length() == len(shared)
    assert all(isinstance(layer, kv_cache.GrowingLayer) for layer in cache.layers)
    prefix.forget()
    batch = {"input_ids": torch.tensor([shared + [PAD, PAD] + tails[0], shared + tails[1]]),
             "attention_mask": torch.tensor([[1] * 6 + [0, 0] + [1] * 2, [1] * 10])}
    with_prefix = greedy(grouped_model, batch, 8, past_key_values=cache)
    plain = greedy(grouped_model, padded_batch_of(rows), 8)
    assert with_prefix[0, -8:].tolist() == plain[0, -8:].tolist()
    assert with_prefix[1, -8:].tolist() == plain[1, -8:].tolist()


def padded_batch_of(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(map(len, rows))
    return {"input_ids": torch.tensor([[PAD] * (width - len(r)) + r for r in rows]),
            "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])}


def test_the_backend_loads_models_with_grouped_attention_on_cpu(tmp_path):
    model, _ = hf._load_base(resolve_model(str(build_tiny_model(tmp_path / "tiny"))), torch.float32)
    assert model.config._attn_implementation == attention.NAME
    assert kv_cache.supports(model)
    assert not kv_cache.supports(LlamaForCausalLM(LlamaConfig(
        vocab_size=8, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8,
        layer_types=["sliding_attention", "full_attention"], sliding_window=4)))
