"""A plain safetensors folder for a model we have as GGUF (the embedded default), converted once.

transformers reads a GGUF file by dequantizing every tensor, which takes longer than the rest of
a short run's start, and vLLM reads no GGUF at all. So the first load converts: transformers
loads the GGUF (dequantized), forgets that it came from a quantized file, and saves model and
tokenizer as a plain folder in the dtype asked for (vLLM serves bf16; the transformers backend
asks for the dtype it computes in, so its fp32 weights stay exactly the dequantized values).
The folder lives in the user cache, keyed by the GGUF file and the dtype, so every BT_HOME and
test session shares one conversion; it is written beside and renamed into place, so a killed
conversion never leaves half a model behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Iterator

import torch

from bt_core.lm.models import ModelSpec


def model_cache_dir() -> Path:
    """BT_MODEL_CACHE, else the user cache (XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("BT_MODEL_CACHE"):
        return Path(os.environ["BT_MODEL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bt-studio" / "models"


def dtype_name(dtype: torch.dtype) -> str:
    """"float32", "bfloat16": how folders, the run profile and vLLM name a torch dtype."""
    return str(dtype).removeprefix("torch.")


def model_dir(spec: ModelSpec, dtype: torch.dtype) -> Path:
    """The folder to load: the model's own when it is already one, else a cached conversion."""
    if spec.gguf_file is None:
        return Path(spec.source)
    target = model_cache_dir() / f"{_key(spec)}-{dtype_name(dtype)}"
    if not (target / "config.json").is_file():
        _convert(spec, target, dtype)
    return target


def load_gguf(spec: ModelSpec, dtype: torch.dtype):
    """Model and tokenizer read from the GGUF file itself (dequantized): what a conversion saves."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.source, gguf_file=spec.gguf_file)
    with _quiet_gguf_conversion():
        model = AutoModelForCausalLM.from_pretrained(spec.source, gguf_file=spec.gguf_file, dtype=dtype)
    return model, tokenizer


@contextmanager
def _quiet_gguf_conversion() -> Iterator[None]:
    """Without the per-tensor bar transformers draws while converting GGUF weights (tqdm.auto,
    which its disable_progress_bar does not reach); it would cut through the CLI's progress."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = gguf_utils.tqdm
    gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _key(spec: ModelSpec) -> str:
    gguf = Path(spec.source, spec.gguf_file).resolve()
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{gguf.stem}-{digest}"


def _weights(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict in `dtype`; a tied output head is not stored twice."""
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    return {k: v.to(dtype) for k, v in model.state_dict().items() if k not in tied}


def _convert(spec: ModelSpec, target: Path, dtype: torch.dtype) -> None:
    model, tokenizer = load_gguf(spec, dtype)
    model.hf_quantizer = None  # the weights are plain tensors now; a loader must not look for GGUF ones
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial_dir = target.with_name(f"{target.name}.partial-{os.getpid()}")
    model.save_pretrained(partial_dir, state_dict=_weights(model, dtype))
    tokenizer.save_pretrained(partial_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        partial_dir.rename(target)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(partial_dir, ignore_errors=True)
