"""The transformers backend's decoding cache grows in place and its attention passes grouped heads
through, and neither changes a generated token or logit."""

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from bt_core.lm.kv_cache import GROUPED_SDPA, GrowingLayer, growing_cache


@pytest.fixture(scope="module")
def grouped_model() -> LlamaForCausalLM:
    """A random Llama whose 6 query heads share 2 key/value heads, as SmolLM2's 9 share 3."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=96, num_hidden_layers=2, num_attention_heads=6,
                         num_key_value_heads=2, intermediate_size=192, attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


def test_a_growing_layer_appends_in_place_and_holds_what_concatenation_would(grouped_model):
    layer, plain = GrowingLayer(), DynamicCache(config=grouped_model.config).layers[0]
    chunks = [torch.randn(3, 2, n, 16) for n in (40, 1, 1, 200, 1)]
    pointers = []
    for chunk in chunks:
        keys, values = layer.update(chunk, -chunk)
        expected_keys, expected_values = plain.update(chunk, -chunk)
        assert torch.equal(keys, expected_keys) and torch.equal(values, expected_values)
        pointers.append(keys.data_ptr())
    assert pointers[0] == pointers[1] == pointers[2]  # single tokens went into the room left after 40
    assert pointers[3] != pointers[2] and pointers[4] == pointers[3]  # 200 more: one regrowth
    assert layer.get_seq_length() == 243
    layer.crop(-3)
    layer.batch_select_indices(torch.tensor([2, 0]))
    assert torch.equal(layer.keys, torch.cat(chunks, dim=2)[[2, 0], :, :240])
    assert torch.equal(layer.update(chunks[1][:2], chunks[1][:2])[0][:, :, 240:], chunks[1][:2])


def test_greedy_decoding_of_a_padded_batch_is_unchanged(grouped_model):
    ids = torch.randint(1, 300, (3, 30))
    mask = torch.ones_like(ids)
    mask[0, :7] = 0  # left padding, so attention always carries a mask
    mask[2, :2] = 0
    settings = {"max_new_tokens": 20, "do_sample": False, "pad_token_id": 0, "output_logits": True,
                "return_dict_in_generate": True}
    with torch.inference_mode():
        reference = grouped_model.generate(input_ids=ids, attention_mask=mask, **settings)
        grouped_model.set_attn_implementation(GROUPED_SDPA)
        try:
            ours = grouped_model.generate(input_ids=ids, attention_mask=mask,
                                          past_key_values=growing_cache(grouped_model), **settings)
        finally:
            grouped_model.set_attn_implementation("sdpa")
    assert torch.equal(ours.sequences, reference.sequences)
    assert all(torch.equal(a, b) for a, b in zip(ours.logits, reference.logits))
