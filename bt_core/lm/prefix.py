"""Prefix KV reuse for the transformers backend: a prompt prefix that a batch shares is computed once.

A candidate program's calls share the system prompt, instructions and demos, most of every
prompt; a padded batch would prefill that prefix once per call. Here a prefix is run once at
batch 1, its keys and values are repeated across the rows that share it, and only each call's
own suffix is prefilled. The left padding of the suffixes then sits between prefix and suffix:
masked, and skipped by the positions, which count from the attention mask.

A batch can hold rows whose prefixes part early: a teacher never runs an example with its own
demo, so the rows whose example is a demo lack it, and the prefix all rows share ends before
the first demo. So a batch is split into groups (`plan`), each with its own prefix, where that
computes fewer tokens; they prefill apart and decode as one batch. The last few prefixes stay
(KEPT per process, so memory stays bounded) for the next batch or group, cropped to what that
one shares with the closest and extended by what it adds: decoding continuously, a program's
modules' calls arrive interleaved, each module behind its own demos.

Callers hold `bt_core.lm.hf._lock`, which also guards the kept prefixes.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from bt_core.lm.kv_cache import Layers

MIN_SAVED = 64  # prompt tokens a batch must save before reuse beats its extra batch-1 forward
GROUP_COST = 256  # prompt tokens another group must save: two more, smaller forward passes (prefix, suffixes)


def enabled() -> bool:
    """`BT_PREFIX_REUSE=0` turns reuse off, e.g. to compare decoding with and without it."""
    return os.environ.get("BT_PREFIX_REUSE", "1") != "0"


def agreement(a: list[int], b: list[int]) -> int:
    """How many leading tokens two sequences share."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def shared_prefix(rows: list[list[int]]) -> int:
    """The tokens every row starts with, leaving each row one of its own for generate to predict from."""
    return max(0, min(min(agreement(rows[0], r) for r in rows), min(map(len, rows)) - 1))


@dataclass(frozen=True)
class Group:
    rows: list[int]  # the batch's rows, in the order the group prefills them
    shared: int  # the prompt tokens they share, computed once


def plan(rows: list[list[int]]) -> tuple[list[Group], int]:
    """The groups that compute the fewest prompt tokens, and how many fewer than one padded batch.

    In sorted order, rows sharing a longer prefix sit together and the prefix of a run of rows is
    the least its neighbours share, so the groups are runs of sorted rows, found by dynamic
    programming. A group computes its prefix (less what the group before it shares with it, kept)
    and its suffixes padded to its longest; every group after the first costs GROUP_COST more.
    """
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    neighbours = [agreement(rows[a], rows[b]) for a, b in zip(order, order[1:])]
    best: list[tuple[float, int, int]] = [(0, 0, 0)]  # per end: (cost, start of its last group, its shared)
    for end in range(1, len(order) + 1):
        choice, together, longest, shortest = (float("inf"), 0, 0), float("inf"), 0, float("inf")
        for start in range(end - 1, -1, -1):
            length = len(rows[order[start]])
            longest, shortest = max(longest, length), min(shortest, length)
            if start < end - 1:
                together = min(together, neighbours[start])
            shared = max(0, min(together, shortest - 1))  # every row keeps a token to predict from
            reused = min(shared, neighbours[start - 1]) if start else 0
            cost = (best[start][0] + shared - reused + (end - start) * (longest - shared)
                    + (GROUP_COST if start else 0))
            choice = min(choice, (cost, start, shared))
        best.append(choice)
    groups, end = [], len(order)
    while end:
        _, start, shared = best[end]
        groups.append(Group(order[start:end], shared))
        end = start
    return groups[::-1], len(rows) * max(map(len, rows)) - best[-1][0]


@dataclass
class _Kept:
    model: weakref.ref  # weak: an evicted merged model must be freed, and a new one never matches it
    ids: list[int]
    layers: Layers  # batch 1


KEPT = 4  # prefixes kept per process: one per module of a three-module program, and one more
_kept: list[_Kept] = []  # the most recently used last


def _closest(model: torch.nn.Module, ids: list[int]) -> tuple[_Kept | None, int]:
    """The kept prefix of this model that shares the most leading tokens with `ids`, and how many."""
    return max(((kept, agreement(kept.ids, ids)) for kept in _kept if kept.model() is model),
               key=lambda pair: pair[1], default=(None, 0))


def kept_for(model: torch.nn.Module, ids: list[int]) -> int:
    """How many of `ids` a kept prefix already holds for this model."""
    return _closest(model, ids)[1]


def forget() -> None:
    """Drop the kept prefixes, so the next batch computes its own (the benchmark measures both)."""
    _kept.clear()


def prefix_layers(model: torch.nn.Module, ids: list[int]) -> tuple[Layers, int]:
    """The keys and values of `ids` at batch 1, and how many of `ids` had to be computed; they stay
    kept, in place of the prefix they extend, else beside the others (the least recently used goes)."""
    kept, reused = _closest(model, ids)
    start = [(k[:, :, :reused], v[:, :, :reused]) for k, v in kept.layers] if reused else []
    layers = _extend(model, start, ids[reused:])
    _kept[:] = [k for k in _kept if k.model() is not None and not (k is kept and reused == len(k.ids))]
    _kept.append(_Kept(weakref.ref(model), ids, layers))
    del _kept[:-KEPT]
    return layers, len(ids) - reused


def _extend(model: torch.nn.Module, layers: Layers, ids: list[int]) -> Layers:
    """`layers` (batch 1) with `ids` run after them; positions continue from the cache's length."""
    if not ids:
        return layers  # views of the kept prefix: no copy
    cache = DynamicCache(layers or None, config=model.config)
    model(input_ids=torch.tensor([ids], device=model.device), past_key_values=cache, use_cache=True,
          logits_to_keep=1)  # the prefix's logits are never read
    return [(layer.keys, layer.values) for layer in cache.layers]
