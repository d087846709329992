"""Prefix KV reuse for the transformers backend: a prompt prefix that a batch shares is computed once.

A candidate program's calls share the system prompt, instructions and demos, most of every
prompt; a padded batch would prefill that prefix once per call. Here the longest token prefix
the batch shares is run once at batch 1, its keys and values are repeated across the batch,
and generate prefills only each call's own suffix. The left padding of the suffixes then sits
between prefix and suffix: masked, and skipped by the positions, which generate counts from
the attention mask. The last prefix stays for the next batch (one per process, so memory stays
bounded), cropped to what that batch shares with it and extended by what it adds.

Callers hold `bt_core.lm.hf._lock`, which also guards the kept prefix.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from bt_core.lm.kv_cache import Layers, growing_cache

MIN_SAVED = 64  # prompt tokens a batch must save before reuse beats its extra batch-1 forward


def enabled() -> bool:
    """`BT_PREFIX_REUSE=0` turns reuse off, e.g. to compare decoding with and without it."""
    return os.environ.get("BT_PREFIX_REUSE", "1") != "0"


def agreement(a: list[int], b: list[int]) -> int:
    """How many leading tokens two sequences share."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def shared_prefix(rows: list[list[int]]) -> int:
    """The tokens every row starts with, leaving each row one of its own for generate to predict from."""
    return max(0, min(min(agreement(rows[0], r) for r in rows), min(map(len, rows)) - 1))


@dataclass
class _Kept:
    model: weakref.ref  # weak: an evicted merged model must be freed, and a new one never matches it
    ids: list[int]
    layers: Layers  # batch 1


_kept: _Kept | None = None


def kept_for(model: torch.nn.Module, ids: list[int]) -> int:
    """How many of `ids` the kept prefix already holds for this model."""
    return agreement(_kept.ids, ids) if _kept is not None and _kept.model() is model else 0


def forget() -> None:
    """Drop the kept prefix, so the next batch computes its own (the benchmark measures both)."""
    global _kept
    _kept = None


def prefix_cache(model: torch.nn.Module, ids: list[int], batch: int, room: int) -> tuple[DynamicCache, int]:
    """A cache holding `ids` for every row of the batch, with room for `room` more tokens, and how many of
    `ids` had to be computed."""
    global _kept
    reused = kept_for(model, ids)
    start = [(k[:, :, :reused], v[:, :, :reused]) for k, v in _kept.layers] if reused else []
    layers = _extend(model, start, ids[reused:])
    _kept = _Kept(weakref.ref(model), ids, layers)
    rows = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers]
    return growing_cache(model, room, rows), len(ids) - reused


def _extend(model: torch.nn.Module, layers: Layers, ids: list[int]) -> Layers:
    """`layers` (batch 1) with `ids` run after them; positions continue from the cache's length."""
    cache = DynamicCache(layers or None, config=model.config)
    if ids:
        model(input_ids=torch.tensor([ids], device=model.device), past_key_values=cache, use_cache=True,
              logits_to_keep=1)  # the prefix's logits are never read
    return [(layer.keys, layer.values) for layer in cache.layers]
