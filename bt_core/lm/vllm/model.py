"""A safetensors folder that vLLM can load, for models we have as GGUF (the embedded default).

vLLM reads HF folders, not our GGUF file: transformers loads the GGUF once (dequantized),
forgets that it came from a quantized file, and saves model (bf16) and tokenizer as a plain folder.
The folder lives in the user cache, keyed by the GGUF file, so every BT_HOME and test
session shares one conversion; it is written beside and renamed into place, so a killed
conversion never leaves half a model behind.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
from pathlib import Path

import torch

from bt_core.lm.models import ModelSpec


def model_cache_dir() -> Path:
    """BT_MODEL_CACHE, else the user cache (XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("BT_MODEL_CACHE"):
        return Path(os.environ["BT_MODEL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bt-studio" / "models"


def vllm_model_dir(spec: ModelSpec) -> Path:
    """The folder vLLM loads: the model's own when it is already one, else a cached conversion."""
    if spec.gguf_file is None:
        return Path(spec.source)
    target = model_cache_dir() / _key(spec)
    if not (target / "config.json").is_file():
        _convert(spec, target)
    return target


def _key(spec: ModelSpec) -> str:
    gguf = Path(spec.source, spec.gguf_file).resolve()
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{gguf.stem}-{digest}"


def _bf16_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """bf16, what vLLM serves on CPU, at half the disk of fp32; a tied output head is not stored twice."""
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    return {k: v.to(torch.bfloat16) for k, v in model.state_dict().items() if k not in tied}


def _convert(spec: ModelSpec, target: Path) -> None:
    from bt_core.lm.hf import load_base

    model, tokenizer = load_base(spec)
    plain = copy.copy(model)  # shares the weights; the HF backend's own model keeps its attributes
    plain.hf_quantizer = None  # the weights are plain tensors now; vLLM must not look for GGUF ones
    plain.config = copy.deepcopy(model.config)
    if hasattr(plain.config, "quantization_config"):
        del plain.config.quantization_config
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    plain.save_pretrained(partial, state_dict=_bf16_weights(model))
    tokenizer.save_pretrained(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        partial.rename(target)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(partial, ignore_errors=True)
