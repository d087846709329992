"""A generation cache that appends each token's keys and values into room reserved for them.

transformers' DynamicLayer concatenates every new token onto the layer's cache, which copies the
whole cache, per layer, per decoding step, and a batch of long few-shot prompts makes that cache
large. Here each layer reserves the tokens a call may still generate once, and a step writes
only its own token (benchmarks/decode_speed.py measures both).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), [batch, heads, tokens, dim]


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
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if not self._fits(key_states, end):  # first use, full, or keys replaced (rows selected, say)
            self._key_buffer = _buffer(self.keys, key_states, start, end + self.room)
            self._value_buffer = _buffer(self.values, value_states, start, end + self.room)
        self._key_buffer[..., start:end, :] = key_states
        self._value_buffer[..., start:end, :] = value_states
        self.keys, self.values = self._key_buffer[..., :end, :], self._value_buffer[..., :end, :]
        return self.keys, self.values

    @classmethod
    def over(cls, keys: torch.Tensor, values: torch.Tensor, length: int, room: int) -> GrowingLayer:
        """A layer writing into these buffers ([batch, heads, capacity, dim], views of a larger
        batch's, say), whose first `length` tokens it holds."""
        layer = cls(room)
        layer.lazy_initialization(keys, values)
        layer._key_buffer, layer._value_buffer = keys, values
        layer.keys, layer.values = keys[..., :length, :], values[..., :length, :]
        return layer

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep these rows (finished calls leave the batch, see decode.py): moved to the front of
        the same buffers, so the peak holds one cache, not the old one and a selected copy."""
        length = self.get_seq_length()
        if not length or self._key_buffer is None or self.keys.data_ptr() != self._key_buffer.data_ptr():
            return super().batch_select_indices(indices)
        kept = len(indices)
        for buffer in (self._key_buffer, self._value_buffer):
            buffer[:kept, :, :length] = buffer[indices, :, :length]  # the right side is a copy of the kept rows
        self._key_buffer, self._value_buffer = self._key_buffer[:kept], self._value_buffer[:kept]
        self.keys, self.values = self._key_buffer[..., :length, :], self._value_buffer[..., :length, :]

    def _fits(self, key_states: torch.Tensor, end: int) -> bool:
        """Whether the buffer still backs `keys` and can take the new tokens."""
        buffer = self._key_buffer
        return (buffer is not None and end <= buffer.shape[-2] and buffer.shape[:2] == key_states.shape[:2]
                and (self.get_seq_length() == 0 or self.keys.data_ptr() == buffer.data_ptr()))


def _buffer(cached: torch.Tensor, new: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    """A buffer of `capacity` tokens holding the first `length` cached ones."""
    buffer = new.new_empty(*new.shape[:2], capacity, new.shape[-1])
    if length:
        buffer[..., :length, :] = cached
    return buffer


def drop(layer: DynamicLayer) -> None:
    """Let go of a layer's keys and values (its cache is being laid out anew, layer by layer)."""
    layer.keys = layer.values = None
    if isinstance(layer, GrowingLayer):
        layer._key_buffer = layer._value_buffer = None


def supports(model: torch.nn.Module) -> bool:
    """Only full attention: a sliding-window layer's cache is not a plain growing sequence."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


def reserve(model: torch.nn.Module, batch: int, capacity: int) -> Layers:
    """Key and value buffers of `capacity` tokens for a batch, per layer, for caches `over` them."""
    config = model.config
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    shape = (batch, config.num_key_value_heads, capacity, dim)
    return [(torch.empty(shape, dtype=model.dtype, device=model.device),
             torch.empty(shape, dtype=model.dtype, device=model.device))
            for _ in DynamicCache(config=model.config).layers]


def cache_over(model: torch.nn.Module, buffers: Layers, length: int, room: int = 0) -> DynamicCache:
    """A cache writing into `buffers`, holding their first `length` tokens; `room` is what a full
    one reserves when it has to grow."""
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer.over(keys, values, length, room) for keys, values in buffers]
    return cache


def growing_cache(model: torch.nn.Module, room: int, layers: Layers | None = None) -> DynamicCache:
    """A cache for generating up to `room` tokens, optionally starting from `layers`' keys and values."""
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer(room) for _ in cache.layers]
    for layer, (keys, values) in zip(cache.layers, layers or []):
        layer.update(keys, values)
    return cache
