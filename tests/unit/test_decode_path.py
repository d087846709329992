"""The transformers backend's decoding path on CPU: grouped-head attention and the growing cache.

Both exist for speed (benchmarks/decode_speed.py), so what these tests hold is that they compute
what transformers' stock path computes, and that they do skip the copies they exist to skip: the
key/value heads repeated for every masked attention call, and the whole cache copied per token.
A tiny random Llama with grouped key/value heads and a left-padded batch exercises both.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, StoppingCriteria, StoppingCriteriaList
from transformers.integrations import sdpa_attention

from bt_core.lm import attention, decode, hf, kv_cache, prefix
from bt_core.lm.models import resolve_model
from tests.tiny_model import build_tiny_model

PAD = 0
TOKENIZER = SimpleNamespace(pad_token_id=PAD)  # all the prefix path asks of a tokenizer


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


@pytest.fixture
def bf16_model(grouped_model):
    model = copy.deepcopy(grouped_model).to(torch.bfloat16)
    yield model
    model.set_attn_implementation("sdpa")


def test_a_bf16_decoding_step_skips_sdpa_and_gives_its_logits(bf16_model, monkeypatch):
    """PyTorch's CPU SDPA is slow for one bf16 query token; the step computes the same attention without it."""
    one_token_calls = []
    original = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda query, *a, **k: one_token_calls.append(query.shape[2] == 1) or original(query, *a, **k))
    batch = padded_batch([5, 12, 9])
    stock = greedy(bf16_model, batch, 4, output_logits=True, return_dict_in_generate=True)
    assert any(one_token_calls), "stock sdpa was expected to attend per decoding step: the test measures nothing"
    one_token_calls.clear()
    bf16_model.set_attn_implementation(attention.NAME)
    ours = greedy(bf16_model, batch, 4, output_logits=True, return_dict_in_generate=True)
    assert one_token_calls and not any(one_token_calls)  # the prompt still goes to SDPA, no decoding step does
    assert torch.equal(ours.sequences, stock.sequences)
    for step in range(1, 4):
        torch.testing.assert_close(ours.logits[step], stock.logits[step], rtol=0, atol=2e-2)


def test_one_token_attention_is_sdpas_over_grouped_heads_and_a_padding_mask():
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(shape, generator=generator, dtype=torch.float64)
                         for shape in ((3, 6, 1, 8), (3, 2, 20, 8), (3, 2, 20, 8)))
    mask = torch.ones(3, 1, 1, 20, dtype=torch.bool)
    mask[0, ..., :7], mask[2, ..., :15] = False, False
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, enable_gqa=True)
    for given in (mask, torch.zeros(mask.shape, dtype=torch.float64).masked_fill(~mask, float("-inf"))):
        torch.testing.assert_close(attention.one_token_attention(query, key, value, given, None).to(torch.float64),
                                   expected.transpose(1, 2), rtol=1e-6, atol=1e-6)


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


def test_inputs_after_a_shared_prefix_hold_every_prompt_token_once_computed(grouped_model):
    """The prefix path (prefix.py) hands decoding a growing cache that holds the shared prefix, once
    computed, and every row's suffix, with room for the new tokens, and the logits after each row."""
    shared, tails = list(range(3, 83)), [[50, 51], [60, 61, 62, 63]]  # enough shared to be worth it
    rows = [shared + tail for tail in tails]
    prefix.forget()
    with torch.no_grad():
        inputs, computed, order = hf.generation_inputs(grouped_model, TOKENIZER, rows, 8)
        plain = grouped_model(**padded_batch_of(rows)).logits[:, -1]
    prefix.forget()
    cache, width = inputs["past_key_values"], 80 + 4
    assert cache.get_seq_length() == width
    assert all(isinstance(layer, kv_cache.GrowingLayer) and layer._key_buffer.shape[-2] == width + 8
               for layer in cache.layers)
    assert computed == [80 + 2, 4] and order == [0, 1]
    torch.testing.assert_close(inputs["logits"], plain)


def test_rows_whose_prefixes_part_early_compute_each_prefix_once_and_decode_as_one_batch(grouped_model):
    """As a teacher's batch: one row lacks the second demo. Grouped, the other rows still share both
    demos, and every row decodes what the plain padded batch decodes for it."""
    system, first, second = [5, 9, 14], list(range(20, 60)), [60 + i % 36 for i in range(150)]
    tails = [[3, 4], [6, 7, 8], [10, 11], [12]]
    rows = [system + first + second + tails[0], system + first + second + tails[1], system + first + tails[2],
            system + first + second + tails[3]]
    prefix.forget()
    with torch.no_grad():
        inputs, computed, order = hf.generation_inputs(grouped_model, TOKENIZER, rows, 10)
        ours = decode.decode(grouped_model, inputs, 10)
    prefix.forget()
    assert sum(computed) < len(system + first + second) + sum(map(len, tails)) + len(tails)
    plain = greedy(grouped_model, padded_batch_of(rows), 10)[:, -10:].tolist()
    assert {row: tokens for row, tokens in zip(order, ours)} == dict(enumerate(plain))


def test_rows_that_join_a_decoding_batch_get_the_tokens_each_decodes_alone(grouped_model):
    """Continuous batching: after 4 steps of a first row, a shorter and a longer prompt join (the
    cache laid out anew, right-aligned to the longest), each with its own budget; every row
    decodes what it decodes alone, and the batch's steps are as wide as the rows still going."""
    prompts = [list(range(3, 18)), list(range(30, 36)), [40 + i % 50 for i in range(22)]]
    budgets = [12, 5, 8]
    alone = [greedy(grouped_model, padded_batch_of([ids]), n)[0, -n:].tolist() for ids, n in zip(prompts, budgets)]
    rows = [decode.Row(n) for n in budgets]
    widths = []
    hook = grouped_model.register_forward_pre_hook(lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[0]),
                                                   with_kwargs=True)
    try:
        with torch.no_grad():
            batch = decode.DecodingBatch(grouped_model)
            for step in range(12):
                if step in (0, 4):
                    joining = [0] if step == 0 else [1, 2]
                    cache = kv_cache.growing_cache(grouped_model, max(budgets))
                    inputs = decode.prefilled(grouped_model, {**padded_batch_of([prompts[r] for r in joining]),
                                                              "past_key_values": cache})
                    batch.admit(inputs, [rows[r] for r in joining])
                batch.choose()
                batch.advance()
    finally:
        hook.remove()
    assert [row.tokens for row in rows] == alone
    assert not batch.rows
    assert widths == [1] + [1] * 4 + [2] + [3] * 4 + [2] * 3  # the prefills, and each step's rows going on


def test_a_batch_that_rows_keep_joining_drops_the_columns_no_row_uses(grouped_model):
    """A long prompt decodes and leaves; a short one that joined it goes on, and another joins
    that: the cache is cut to what the rows still use, not as wide as every row it ever held."""
    prompts = [[40 + i % 50 for i in range(22)], list(range(30, 36)), list(range(3, 9))]
    budgets, joins = [4, 10, 3], [0, 1, 5]  # the step at which each joins
    alone = [greedy(grouped_model, padded_batch_of([ids]), n)[0, -n:].tolist() for ids, n in zip(prompts, budgets)]
    rows = [decode.Row(n) for n in budgets]
    fed = []
    hook = grouped_model.register_forward_pre_hook(
        lambda _, args, kwargs: fed.append(tuple(kwargs["attention_mask"].shape)), with_kwargs=True)
    try:
        with torch.no_grad():
            batch = decode.DecodingBatch(grouped_model)
            for step in range(11):
                for row, at in enumerate(joins):
                    if at == step:
                        cache = kv_cache.growing_cache(grouped_model, budgets[row])
                        batch.admit(decode.prefilled(grouped_model, {**padded_batch_of([prompts[row]]),
                                                                     "past_key_values": cache}), [rows[row]])
                batch.choose()
                batch.advance()
    finally:
        hook.remove()
    assert [row.tokens for row in rows] == alone
    after_last_join = fed[fed.index((1, 6), fed.index((1, 6)) + 1) + 1]  # the step after the third prompt's prefill
    assert after_last_join == (2, 6 + 4 + 1)  # the second row's prompt and 4 tokens, and this step's; not 22 + 5 + 1


def test_prefixes_of_interleaved_modules_stay_kept_and_the_least_recently_used_goes(grouped_model):
    """Decoding continuously, a program's modules' calls arrive in turn, each behind its own demos:
    each module's prefix is computed once, until more modules than KEPT take turns."""
    modules = [[5 + m] + [10 + (7 * m + i) % 80 for i in range(40)] for m in range(prefix.KEPT + 1)]
    prefix.forget()
    try:
        with torch.no_grad():
            first = [prefix.prefix_layers(grouped_model, ids)[1] for ids in modules[:-1]]
            again = [prefix.prefix_layers(grouped_model, ids)[1] for ids in modules[:-1]]
            extended = prefix.prefix_layers(grouped_model, modules[0] + [90, 91])[1]
            prefix.prefix_layers(grouped_model, modules[-1])  # one module too many: the oldest goes
            evicted = prefix.prefix_layers(grouped_model, modules[1])[1]
    finally:
        prefix.forget()
    assert first == [41] * prefix.KEPT and again == [0] * prefix.KEPT
    assert extended == 2  # the kept prefix it extends is replaced, not kept beside it
    assert evicted == 41


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


def generated(out: torch.Tensor, width: int, end: int) -> list[list[int]]:
    """generate's new tokens per row, up to and with the end token (after it: padding)."""
    rows = [row[width:].tolist() for row in out]
    return [row[: row.index(end) + 1] if end in row else row for row in rows]


class StopAt(StoppingCriteria):
    """generate's form of a per-row stop test: row r is done once it has `lengths[r]` new tokens."""

    def __init__(self, width: int, lengths: list[int]) -> None:
        self.width, self.lengths = width, lengths

    def __call__(self, input_ids, scores, **kwargs):
        return torch.tensor([input_ids.shape[1] - self.width >= n for n in self.lengths])


def test_decoding_gives_generates_tokens_and_drops_finished_rows(grouped_model, monkeypatch):
    """Rows stopped by their own test leave the batch (each forward after that is narrower), their
    cache rows compacted in the same buffers (no second cache at the peak), and every row decodes
    what generate decodes for it, whose finished rows run on as padding."""
    buffers = []
    original = kv_cache._buffer
    monkeypatch.setattr(kv_cache, "_buffer", lambda *args: buffers.append(args[-1]) or original(*args))
    lengths, stops = [6, 15, 11, 9], [3, 12, 7, 12]
    batch = padded_batch(lengths)
    width = batch["input_ids"].shape[1]
    stock = greedy(grouped_model, batch, 12, stopping_criteria=StoppingCriteriaList([StopAt(width, stops)]))
    widths = []
    hook = grouped_model.register_forward_pre_hook(lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[0]),
                                                   with_kwargs=True)
    try:
        with torch.no_grad():
            cache = kv_cache.growing_cache(grouped_model, 12)
            inputs = decode.prefilled(grouped_model, {**batch, "past_key_values": cache})
            ours = decode.decode(grouped_model, inputs, 12, finished=lambda row, ids: len(ids) >= stops[row])
    finally:
        hook.remove()
    assert ours == [row[:n] for row, n in zip(generated(stock, width, end=-1), stops)]
    assert widths == [4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 2]  # a row leaves after its last token
    layers = grouped_model.config.num_hidden_layers
    assert buffers == [15 + 12] * (2 * layers)  # keys and values per layer: the prompt's, and no more


def test_decoding_ends_a_row_at_the_end_token_as_generate_does(grouped_model):
    """A model that favours the end token: rows end at different steps, each as generate ends it."""
    biased = LlamaForCausalLM(grouped_model.config).eval()
    biased.load_state_dict(grouped_model.state_dict())
    with torch.no_grad():
        biased.lm_head.weight[2] += 0.35 * biased.lm_head.weight[2].norm()  # the end token's logit, up
    batch = padded_batch([6, 15, 11, 4, 9])
    width = batch["input_ids"].shape[1]
    with torch.no_grad():
        stock = biased.generate(**batch, max_new_tokens=20, do_sample=False, pad_token_id=PAD)
        inputs = decode.prefilled(biased, {**batch, "past_key_values": kv_cache.growing_cache(biased, 20)})
        ours = decode.decode(biased, inputs, 20)
    expected = generated(stock, width, end=2)
    assert ours == expected
    ended = [len(row) for row in expected if row[-1] == 2]
    assert len(set(ended)) > 1 and len(ended) < len(expected), "rows should end apart, and not all of them"


def test_decoding_after_a_shared_prefix_gives_the_plain_batchs_tokens(grouped_model):
    shared, tails = list(range(3, 83)), [[50, 51], [60, 61, 62, 63], [70]]
    rows = [shared + tail for tail in tails]
    prefix.forget()
    with torch.no_grad():
        inputs, _, order = hf.generation_inputs(grouped_model, TOKENIZER, rows, 10)
        ours = decode.decode(grouped_model, inputs, 10, finished=lambda at, ids: len(ids) >= 4 + 3 * order[at])
        plain = greedy(grouped_model, padded_batch_of(rows), 10)
    prefix.forget()
    assert {row: tokens for row, tokens in zip(order, ours)} == {
        r: row[: 4 + 3 * r] for r, row in enumerate(plain[:, -10:].tolist())}
