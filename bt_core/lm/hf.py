"""The transformers backend: any HF model (folder, cached id or GGUF file), CPU or CUDA.

Weights load once per process and are shared by every HFLM view of the model; a view with an
adapter uses the base model with the LoRA merged into copies of the layers it changes (the rest
stays shared), which on CPU decodes as fast as the base model (unmerged peft layers add a matmul
per projection per token).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as transformers_logging

from bt_core.lm import attention, kv_cache, packed_linear, prefix
from bt_core.lm.backends import HF_BACKENDS
from bt_core.lm.base import (
    LM,
    Completion,
    LoraConfig,
    Messages,
    SamplingParams,
    TrainingLog,
    adapter_fingerprint,
    as_hit,
    chat_prompt,
    prefill,
)
from bt_core.lm.converted import dtype_name, model_dir
from bt_core.lm.decode import DecodingBatch, Row, prefilled
from bt_core.lm.lora import merged_copy, train_lora
from bt_core.lm.memory import return_freed_memory
from bt_core.lm.models import ModelSpec
from bt_core.lm.stopping import field_closed, truncate_after_field
from bt_core.lm.threads import follow_threads

if TYPE_CHECKING:
    from bt_core.lm.batching import Item

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
        completions: dict[int, Completion] = {}
        calls = self._calls([(m, params) for m in batch], lambda at, completion: completions.setdefault(at, completion))
        self._decode(calls, lambda: [], lambda size: None)  # generate() has counted this batch
        return [completions[at] for at in range(len(batch))]

    def serve_calls(self, calls: list[Item], arrivals: Callable[[], list[Item]]) -> None:
        """Decode continuously: calls queued while others decode join the batch between steps, and
        each call's future is set the moment it finishes, so its caller's next call can join too."""
        if not kv_cache.supports(self.model()):  # a sliding-window cache cannot be laid out anew
            return super().serve_calls(calls, arrivals)
        self._decode(self._misses(calls), lambda: self._misses(arrivals()), self.batches.append)

    def _misses(self, items: list[Item]) -> list[_Call]:
        """The calls the LM-call cache cannot answer; it answers the rest now, and learns each miss."""
        keys = [self._cache_key(m, p) for m, p, _ in items]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        misses = [(item, key) for item, key in zip(items, keys) if key not in found]
        for (_, _, future), key in zip(items, keys):
            if key in found:
                future.set_result(as_hit(found[key]))

        def done(at: int, completion: Completion) -> None:
            (_, _, future), key = misses[at]
            if self.cache is not None:
                self.cache.put_many({key: completion})
            future.set_result(completion)

        return self._calls([(m, p) for (m, p, _), _ in misses], done)

    def _calls(self, requests: list[tuple[Messages, SamplingParams]], done: Callable[[int, Completion], None]
               ) -> list[_Call]:
        if not requests:
            return []  # the tokenizer takes no empty batch
        tok = self.tokenizer
        rows = tok([chat_prompt(tok, m) for m, _ in requests], add_special_tokens=False).input_ids

        def closed(begun: str, stop: str, ids: list[int]) -> bool:
            return field_closed(begun + tok.decode(ids, skip_special_tokens=True), stop)

        calls = []
        for at, ((messages, params), row) in enumerate(zip(requests, rows)):
            begun, stop = prefill(messages), params.stop_after_field
            test = partial(closed, begun, stop) if stop else None
            calls.append(_Call(params.max_new_tokens, params.temperature, test, ids=row, params=params, begun=begun,
                               done=partial(done, at)))
        return calls

    def _decode(self, calls: list[_Call], more: Callable[[], list[_Call]], prefilling: Callable[[int], None]
                ) -> None:
        """Decode `calls` and those `more()` brings, at most max_batch_size at a time (see decode.py),
        telling `prefilling` the size of each group prefilled together."""
        tok = self.tokenizer
        with _lock, torch.inference_mode():
            follow_threads()
            model = self.model()
            with packed_linear.packed(model):
                batch, waiting = DecodingBatch(model), calls
                while True:
                    waiting = waiting + more()
                    room = self.max_batch_size - len(batch.rows)
                    joining, waiting = waiting[:room], waiting[room:]
                    if joining:
                        prefilling(len(joining))
                        start = time.perf_counter()
                        inputs, computed, order = generation_inputs(model, tok, [c.ids for c in joining],
                                                                    max(c.max_new_tokens for c in joining))
                        for call, tokens in zip(joining, computed):
                            call.start, call.computed = start, tokens
                        batch.admit(inputs, [joining[at] for at in order])
                        del inputs
                    if not batch.rows:
                        if waiting:
                            continue
                        break
                    for call in batch.choose():
                        text = tok.decode(call.tokens, skip_special_tokens=True)
                        call.done(finish(tok, text, len(call.ids), time.perf_counter() - call.start, call.params,
                                         call.begun, call.computed))
                    batch.advance()
            return_freed_memory()

    def train_adapter(self, conversations: list[Messages], config: LoraConfig, out_dir: Path,
                      on_log: Callable[[int, float], None] | None = None,
                      start_adapter: str | None = None) -> TrainingLog:
        with _lock:
            packed_linear.release()  # training needs the memory more than the next generate needs the packs
            return train_lora(self.model(), self.tokenizer, conversations, config, out_dir, on_log, start_adapter)


@dataclass(eq=False, kw_only=True)
class _Call(Row):
    """A call in the backend's decoding batch: its prompt, what it asked for, and whom to tell."""

    ids: list[int]  # the prompt's tokens
    params: SamplingParams
    begun: str  # the assistant turn it continues, for its stop test and its cut
    done: Callable[[Completion], None]
    start: float = 0.0  # when its prefill began
    computed: int = 0  # prompt tokens its prefill computed


def finish(tokenizer, text: str, prompt_tokens: int, latency: float, params: SamplingParams,
           prefill: str = "", computed_prompt_tokens: int | None = None) -> Completion:
    """A generated text as a Completion: cut after the last field's line, tokens counted in what is kept.

    Shared by every backend that decodes real tokens, so their completions compare one to one.
    """
    if params.stop_after_field:
        text = truncate_after_field(text, params.stop_after_field, prefill)
    return Completion(text, prompt_tokens, len(tokenizer(text, add_special_tokens=False).input_ids), latency,
                      computed_prompt_tokens=computed_prompt_tokens)


def generation_inputs(model: torch.nn.Module, tok, rows: list[list[int]], room: int
                      ) -> tuple[dict, list[int], list[int]]:
    """decode's inputs for these prompts, prefilled into a cache with `room` for the new tokens (see
    kv_cache.py); the prompt tokens each call computes; and the call of each batch row. Prefixes
    are computed once where that saves enough (see prefix.py), else the rows form one
    left-padded batch."""
    growing = kv_cache.supports(model)
    if prefix.enabled() and growing:
        groups, saved = prefix.plan(rows)
        first = groups[0]
        if saved + prefix.kept_for(model, rows[first.rows[0]][:first.shared]) >= prefix.MIN_SAVED:
            return _after_prefixes(model, tok, rows, groups, room)
    ids, mask = _layout(tok, rows, 0, 0, max(map(len, rows)))
    cache = kv_cache.growing_cache(model, room) if growing else DynamicCache(config=model.config)
    inputs = prefilled(model, {"input_ids": ids, "attention_mask": mask, "past_key_values": cache})
    return inputs, list(map(len, rows)), [*range(len(rows))]


def _after_prefixes(model: torch.nn.Module, tok, rows: list[list[int]], groups: list[prefix.Group], room: int
                    ) -> tuple[dict, list[int], list[int]]:
    """Rows [left pads | prefix | pads | suffix], group after group, in one cache: each group's prefix
    is computed once, then its suffixes. Pads are masked and take no position. A group's prefix
    counts on its first call."""
    width = max(map(len, rows))
    buffers = kv_cache.reserve(model, len(rows), width + room)
    masks, logits, computed, start = [], [], [0] * len(rows), 0
    for group in groups:
        end = start + len(group.rows)
        pads = width - max(len(rows[row]) for row in group.rows)  # before the group's prefix
        group_ids, group_mask = _layout(tok, [rows[row] for row in group.rows], group.shared, pads, width)
        views = [(keys[start:end], values[start:end]) for keys, values in buffers]
        for keys, values in views:
            keys[..., :pads, :], values[..., :pads, :] = 0, 0  # masked, but no garbage a NaN could come from
        cache = kv_cache.cache_over(model, views, pads)
        if group.shared:
            shared, computed[group.rows[0]] = prefix.prefix_layers(model, rows[group.rows[0]][:group.shared])
            for layer, (keys, values) in zip(cache.layers, shared):
                layer.update(keys.expand(end - start, -1, -1, -1), values.expand(end - start, -1, -1, -1))
        logits.append(prefilled(model, {"input_ids": group_ids, "attention_mask": group_mask,
                                      "past_key_values": cache})["logits"])
        for row in group.rows:
            computed[row] += len(rows[row]) - group.shared
        masks.append(group_mask)
        start = end
    inputs = {"attention_mask": torch.cat(masks), "logits": torch.cat(logits),
              "past_key_values": kv_cache.cache_over(model, buffers, width, room)}
    return inputs, computed, [row for group in groups for row in group.rows]


def _layout(tok, rows: list[list[int]], shared: int, pads: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of rows [`pads` | their shared prefix | pads | each one's suffix], `width` wide."""
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for at, row in enumerate(rows):
        for span, tokens in ((slice(pads, pads + shared), row[:shared]), (slice(width - len(row) + shared, width),
                                                                          row[shared:])):
            ids[at, span], mask[at, span] = torch.tensor(tokens, dtype=torch.long), 1
    return ids.to(device()), mask.to(device())
