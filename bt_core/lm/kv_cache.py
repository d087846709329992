"""Generation caches that append each token's keys and values into room reserved for them.

transformers' DynamicLayer concatenates every new token onto the layer's cache, which copies the
whole cache, per layer, per decoding step: for a batch of long few-shot prompts on CPU that copy
took about as long as the model's matrix products. Here each layer reserves the tokens a call
may still generate once, and a step writes only its own token.

A batch whose prompts share a prefix (prefix.py) can also keep that prefix once, at batch 1,
instead of a copy per row: every decoding step reads the whole cache, so the copies made the
attention read the shared demos once per row. attention.py reads such a layer's prefix once for
the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), [batch, heads, tokens, dim]
_PREFIX = "bt_shared_prefix"  # the attribute on a layer's returned keys that carries its shared prefix


@dataclass(frozen=True)
class SharedPrefix:
    """Keys and values that every row of a batch attends to first, held once: [1, heads, tokens, dim]."""

    keys: torch.Tensor
    values: torch.Tensor

    @property
    def length(self) -> int:
        return self.keys.shape[-2]


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of a buffer with `room` spare tokens."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self._own_length()
        end = start + key_states.shape[-2]
        if not self._fits(key_states, end):  # first use, full, or keys replaced (rows selected, say)
            self._key_buffer = _buffer(self.keys, key_states, start, end + self.room)
            self._value_buffer = _buffer(self.values, value_states, start, end + self.room)
        self._key_buffer[..., start:end, :] = key_states
        self._value_buffer[..., start:end, :] = value_states
        self.keys, self.values = self._key_buffer[..., :end, :], self._value_buffer[..., :end, :]
        return self.keys, self.values

    def _own_length(self) -> int:
        """The tokens this layer's own buffer holds (DynamicLayer's get_seq_length, before any prefix)."""
        return DynamicLayer.get_seq_length(self)

    def _fits(self, key_states: torch.Tensor, end: int) -> bool:
        """Whether the buffer still backs `keys` and can take the new tokens."""
        buffer = self._key_buffer
        return (buffer is not None and end <= buffer.shape[-2] and buffer.shape[:2] == key_states.shape[:2]
                and (self._own_length() == 0 or self.keys.data_ptr() == buffer.data_ptr()))


class SharedPrefixLayer(GrowingLayer):
    """A GrowingLayer after a prefix every row shares: its buffer holds only each row's own tokens, and the
    keys it returns carry the prefix for attention.py, which alone can read them this way."""

    def __init__(self, room: int, prefix: SharedPrefix) -> None:
        super().__init__(room)
        self.prefix = prefix

    def get_seq_length(self) -> int:
        return self.prefix.length + self._own_length()  # positions and masks count the prefix

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().update(key_states, value_states)
        setattr(keys, _PREFIX, self.prefix)
        return keys, values


def shared_prefix(keys: torch.Tensor) -> SharedPrefix | None:
    """The prefix that comes before these keys (a SharedPrefixLayer's), if any."""
    return getattr(keys, _PREFIX, None)


def _buffer(cached: torch.Tensor, new: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    """A buffer of `capacity` tokens holding the first `length` cached ones."""
    buffer = new.new_empty(*new.shape[:2], capacity, new.shape[-1])
    if length:
        buffer[..., :length, :] = cached
    return buffer


def supports(model: torch.nn.Module) -> bool:
    """Only full attention: a sliding-window layer's cache is not a plain growing sequence."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


def growing_cache(model: torch.nn.Module, room: int, prefix: Layers | None = None, batch: int = 1,
                  share: bool = False) -> DynamicCache:
    """A cache for generating up to `room` tokens per row of `batch`, after `prefix` (batch-1 keys and values
    per layer) if given: held once if `share` (for attention that reads it so), else copied into every row."""
    cache = DynamicCache(config=model.config)
    if prefix and share:
        cache.layers = [SharedPrefixLayer(room, SharedPrefix(k, v)) for k, v in prefix]
        return cache
    cache.layers = [GrowingLayer(room) for _ in cache.layers]
    for layer, (keys, values) in zip(cache.layers, prefix or []):
        layer.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1))
    return cache
