"""The embedded GGUF model is converted once into a plain folder that loads to exactly its weights and tokens."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bt_core.lm.base import chat_prompt
from bt_core.lm.converted import load_gguf, model_dir
from bt_core.lm.models import resolve_model

pytestmark = pytest.mark.integration


def test_the_fp32_conversion_holds_the_gguf_files_own_weights_and_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("BT_MODEL_CACHE", str(tmp_path))
    spec = resolve_model("smollm2-135m")
    folder = model_dir(spec, torch.float32)
    assert folder.parent == tmp_path and folder.name.endswith("-float32")
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert model_dir(spec, torch.float32) == folder and (folder / "model.safetensors").stat().st_mtime_ns == written

    gguf_model, gguf_tokenizer = load_gguf(spec, torch.float32)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    converted = dict(model.named_parameters())
    for name, weight in gguf_model.named_parameters():
        assert torch.equal(converted[name], weight), name
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied, stored once
    messages = [{"role": "system", "content": "Answer with the species."},
                {"role": "user", "content": "Petal length: 1.4 ünïcode"}]
    assert tokenizer(chat_prompt(tokenizer, messages)).input_ids == gguf_tokenizer(
        chat_prompt(gguf_tokenizer, messages)).input_ids
