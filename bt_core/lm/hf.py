"""The transformers backend: any HF model (folder, cached id or GGUF file), CPU or CUDA.

Weights load once per process and are shared by every HFLM view of the model; a view with an
adapter uses the base model with the LoRA merged into copies of the layers it changes (the rest
stays shared), which on CPU decodes as fast as the base model (unmerged peft layers add a matmul
per projection per token).
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as transformers_logging

from bt_core.lm import attention, kv_cache, prefix
from bt_core.lm.backends import HF_BACKENDS
from bt_core.lm.base import (
    LM,
    Completion,
    LoraConfig,
    Messages,
    SamplingParams,
    TrainingLog,
    adapter_fingerprint,
    chat_prompt,
    prefill,
)
from bt_core.lm.converted import dtype_name, model_dir
from bt_core.lm.decode import decode
from bt_core.lm.lora import merged_copy, train_lora
from bt_core.lm.models import ModelSpec
from bt_core.lm.stopping import field_closed, truncate_after_field
from bt_core.lm.threads import follow_threads

_lock = threading.Lock()  # one generate or train at a time per process, on the process's core share
_load_lock = threading.RLock()


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype() -> torch.dtype:
    """What `hf` computes in: bf16 on CUDA; fp32 on CPU, where bf16 chose other programs (README)."""
    return torch.bfloat16 if device() == "cuda" else torch.float32


def load_base(spec: ModelSpec, dtype: torch.dtype):
    """Weights and tokenizer, loaded once per process (loading is not thread-safe in transformers)."""
    with _load_lock:
        return _load_base(spec, dtype)


@lru_cache(maxsize=1)  # one base model per process: a worker that moves to another model drops the last
def _load_base(spec: ModelSpec, dtype: torch.dtype):
    transformers_logging.set_verbosity_error()  # GGUF loading reports the tied lm_head as "missing"
    transformers_logging.disable_progress_bar()
    folder = model_dir(spec, dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    grouped = {"attn_implementation": attention.NAME} if device() == "cpu" else {}  # CUDA kernels want the repeat
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **grouped).to(device())
    model.eval()
    return model, tokenizer


def merged(spec: ModelSpec, dtype: torch.dtype, adapter_path: str):
    """The base model with an adapter merged in; the fingerprint keys retrained adapters apart."""
    base, _ = load_base(spec, dtype)
    with _load_lock:
        return _merge(adapter_path, adapter_fingerprint(adapter_path), base)


@lru_cache(maxsize=1)  # at most one merged copy beside the base: each w step's adapter replaces the last
def _merge(adapter_path: str, fingerprint: str, base: torch.nn.Module):
    return merged_copy(base, adapter_path)


class HFLM(LM):
    """`hf` computes in default_dtype(); `hf-bf16` in bf16 everywhere, which CPUs with bf16 dot products
    (AVX512-BF16, AMX) run two to three times faster, at other greedy choices than fp32's."""

    def __init__(self, spec: ModelSpec, adapter_path: str | None = None, *, backend: str = "hf", **kwargs) -> None:
        super().__init__(spec.name, adapter_path, **kwargs)
        if backend not in HF_BACKENDS:
            raise ValueError(f"not a transformers backend: {backend!r}")
        self.spec, self.backend = spec, backend
        self.torch_dtype = torch.bfloat16 if backend == "hf-bf16" else default_dtype()

    @property
    def dtype(self) -> str:
        return dtype_name(self.torch_dtype)

    @property
    def tokenizer(self):
        return load_base(self.spec, self.torch_dtype)[1]

    def model(self) -> torch.nn.Module:
        if self.adapter_path is None:
            return load_base(self.spec, self.torch_dtype)[0]
        return merged(self.spec, self.torch_dtype, self.adapter_path)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in load_base(self.spec, self.torch_dtype)[0].parameters())

    def with_adapter(self, adapter_path: str | None) -> HFLM:
        return HFLM(self.spec, adapter_path, backend=self.backend, cache=self.cache, max_batch_size=self.max_batch_size)

    def _generate(self, batch: list[Messages], params: SamplingParams) -> list[Completion]:
        tok = self.tokenizer
        rows = tok([chat_prompt(tok, m) for m in batch], add_special_tokens=False).input_ids
        prefills = [prefill(m) for m in batch]
        stop = params.stop_after_field

        def closed(row: int, ids: list[int]) -> bool:
            return field_closed(prefills[row] + tok.decode(ids, skip_special_tokens=True), stop)

        with _lock, torch.inference_mode():
            follow_threads()
            model = self.model()
            start = time.perf_counter()
            inputs, computed = generation_inputs(model, tok, rows, params.max_new_tokens)
            new = decode(model, inputs, params.max_new_tokens, temperature=params.temperature,
                         finished=closed if stop else None)
            latency = time.perf_counter() - start
        return [finish(tok, tok.decode(ids, skip_special_tokens=True), len(row), latency, params, p, n)
                for ids, row, p, n in zip(new, rows, prefills, computed)]

    def train_adapter(self, conversations: list[Messages], config: LoraConfig, out_dir: Path,
                      on_log: Callable[[int, float], None] | None = None,
                      start_adapter: str | None = None) -> TrainingLog:
        with _lock:
            return train_lora(self.model(), self.tokenizer, conversations, config, out_dir, on_log, start_adapter)


def finish(tokenizer, text: str, prompt_tokens: int, latency: float, params: SamplingParams,
           prefill: str = "", computed_prompt_tokens: int | None = None) -> Completion:
    """A generated text as a Completion: cut after the last field's line, tokens counted in what is kept.

    Shared by every backend that decodes real tokens, so their completions compare one to one.
    """
    if params.stop_after_field:
        text = truncate_after_field(text, params.stop_after_field, prefill)
    return Completion(text, prompt_tokens, len(tokenizer(text, add_special_tokens=False).input_ids), latency,
                      computed_prompt_tokens=computed_prompt_tokens)


def generation_inputs(model: torch.nn.Module, tok, rows: list[list[int]], room: int) -> tuple[dict, list[int]]:
    """The decoding inputs for these prompts, over a cache with `room` for the new tokens (see kv_cache.py),
    and the prompt tokens each call computes: after the shared prefix's cache when reusing it saves
    enough (see prefix.py), else one left-padded batch."""
    growing = kv_cache.supports(model)
    shared = prefix.shared_prefix(rows)
    saved = (len(rows) - 1) * shared + prefix.kept_for(model, rows[0][:shared])
    if prefix.enabled() and saved >= prefix.MIN_SAVED and growing:
        return _after_prefix(model, tok, rows, shared, room)
    inputs = dict(tok.pad({"input_ids": rows}, return_tensors="pt").to(device()))
    inputs["past_key_values"] = kv_cache.growing_cache(model, room) if growing else DynamicCache(config=model.config)
    return inputs, [len(r) for r in rows]


def _after_prefix(model: torch.nn.Module, tok, rows: list[list[int]], shared: int, room: int
                  ) -> tuple[dict, list[int]]:
    """[prefix | left pads | suffix] rows over the prefix's cache; decoding prefills only the suffixes, and
    the pads, masked, take no position. The prefix's computed tokens count on the first call."""
    suffixes = tok.pad({"input_ids": [r[shared:] for r in rows]}, return_tensors="pt").to(device())
    cache, prefix_computed = prefix.prefix_cache(model, rows[0][:shared], len(rows),
                                                 room + suffixes.input_ids.shape[1])
    head = torch.tensor([rows[0][:shared]], device=device()).expand(len(rows), -1)
    inputs = {"input_ids": torch.cat([head, suffixes.input_ids], dim=1),
              "attention_mask": torch.cat([torch.ones_like(head), suffixes.attention_mask], dim=1),
              "past_key_values": cache}
    return inputs, [len(r) - shared + (prefix_computed if i == 0 else 0) for i, r in enumerate(rows)]
