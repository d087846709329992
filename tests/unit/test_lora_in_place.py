"""LoRA trains on the caller's base model in place, with no copy of its weights, and gives it back
as it was: the memory of a w step is the base's, the adapter's and the activations', not twice the base's."""

import copy

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from bt_core.lm.base import LoraConfig
from bt_core.lm.lora import completion_loss, merged_copy, train_lora
from bt_core.serve.profile import peak_memory_mb, reset_peak_memory
from tests.unit.test_continued_training import CONVERSATIONS


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    """A random Llama of about 64M parameters (256 MB in fp32): big enough that a copy shows in the peak."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                         num_key_value_heads=8, intermediate_size=1536, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval(), tokenizer


def weight_mb(model: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def test_training_copies_no_weights_and_leaves_the_base_as_it_was(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    probe = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        before = model(probe).logits
    reset_peak_memory()
    start_mb = peak_memory_mb()
    log = train_lora(model, tokenizer, CONVERSATIONS, LoraConfig(rank=4, alpha=8, epochs=1, batch_size=2,
                                                                 learning_rate=1e-2), tmp_path / "adapter")
    grown = peak_memory_mb() - start_mb
    assert grown < weight_mb(model) / 2, f"training grew the peak by {grown:.0f} MB for {weight_mb(model):.0f} MB"
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file() and log.losses
    assert not any(isinstance(m, LoraLayer) for m in model.modules()) and not model.training
    with torch.inference_mode():
        assert torch.equal(model(probe).logits, before)


def test_the_completion_loss_is_transformers_own_on_the_full_logits(model_and_tokenizer):
    model, _ = model_and_tokenizer
    torch.manual_seed(1)
    input_ids = torch.randint(0, 1000, (3, 12))
    mask = torch.ones_like(input_ids)
    mask[1, 9:] = 0  # a shorter row, padded on the right
    labels = torch.full_like(input_ids, -100)
    labels[0, 8:] = input_ids[0, 8:]
    labels[1, 5:9] = input_ids[1, 5:9]
    labels[2, 10:] = input_ids[2, 10:]
    with torch.inference_mode():
        full = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        assert torch.allclose(completion_loss(model, input_ids, mask, labels), full, rtol=1e-5)


def test_a_merged_copy_holds_new_weights_only_for_the_layers_the_adapter_changes(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    adapter = tmp_path / "adapter"
    train_lora(model, tokenizer, CONVERSATIONS, LoraConfig(rank=4, alpha=8, epochs=1, batch_size=2, learning_rate=1e-2,
                                                           target_modules=["q_proj", "v_proj"]), adapter)
    probe = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        before = model(probe).logits
        full_copy = PeftModel.from_pretrained(copy.deepcopy(model), str(adapter)).merge_and_unload().eval()
        expected = full_copy(probe).logits
    del full_copy
    merged = merged_copy(model, str(adapter))
    base_storage = {p.data_ptr() for p in model.parameters()}
    own = sorted(name for name, p in merged.named_parameters() if p.data_ptr() not in base_storage)
    assert own == sorted(f"model.layers.{i}.self_attn.{m}.weight" for i in range(4) for m in ("q_proj", "v_proj"))
    with torch.inference_mode():
        assert torch.equal(merged(probe).logits, expected) and not torch.equal(expected, before)
        assert torch.equal(model(probe).logits, before)  # the merge wrote into no shared tensor
