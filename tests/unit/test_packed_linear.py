"""Packed linear layers (bt_core/lm/packed_linear.py) compute what plain ones do, follow a weight
that changed, hand the model back plain, and keep packs only for the model generating now."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bt_core.lm import packed_linear


@pytest.fixture
def model() -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=96, max_position_embeddings=64)
    torch.manual_seed(0)
    yield LlamaForCausalLM(config).eval()
    packed_linear.release()


PROBE = torch.tensor([[5, 9, 13, 40, 2], [7, 7, 31, 60, 11]])


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(PROBE).logits


def linear_weights(model: torch.nn.Module) -> set[int]:
    return {m.weight.data_ptr() for m in model.modules() if type(m) is torch.nn.Linear}


def test_packed_layers_compute_the_plain_logits_and_the_model_comes_back_plain(model):
    plain = logits(model)
    with packed_linear.packed(model):
        assert all("forward" in m.__dict__ for m in model.modules() if type(m) is torch.nn.Linear)
        torch.testing.assert_close(logits(model), plain, rtol=1e-4, atol=1e-5)
    assert not any("forward" in m.__dict__ for m in model.modules())
    assert torch.equal(logits(model), plain)


def test_a_weight_changed_in_place_is_packed_again(model):
    with packed_linear.packed(model):
        logits(model)
    with torch.no_grad():
        model.lm_head.weight.mul_(2)  # as an in-place merge would
    plain = logits(model)
    with packed_linear.packed(model):
        torch.testing.assert_close(logits(model), plain, rtol=1e-4, atol=1e-5)


def test_only_the_generating_models_weights_stay_packed_and_shared_ones_are_reused(model):
    other = copy.deepcopy(model)  # like a merged adapter model: its own attention, the base's MLP
    for layer_of_other, layer in zip(other.model.layers, model.model.layers):
        layer_of_other.mlp = layer.mlp
    plain = logits(other)
    with packed_linear.packed(model):
        logits(model)
    mlp = {layer.mlp.up_proj.weight.data_ptr() for layer in model.model.layers}
    mlp_packs = {id(pack) for key, (_, pack) in packed_linear._packs.items() if key[0] in mlp}
    with packed_linear.packed(other):
        torch.testing.assert_close(logits(other), plain, rtol=1e-4, atol=1e-5)
    assert {key[0] for key in packed_linear._packs} == linear_weights(other)
    assert len(mlp_packs) == len(mlp) and mlp_packs <= {id(pack) for _, pack in packed_linear._packs.values()}
    packed_linear.release()
    assert not packed_linear._packs


def test_the_ceiling_counts_the_packed_product():
    weight = torch.randn(32, 48)
    x = torch.randn(5, 48)
    torch.testing.assert_close(packed_linear.product(weight)(x), x @ weight.T, rtol=1e-4, atol=1e-5)
