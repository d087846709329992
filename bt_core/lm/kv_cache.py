"""Decoding without copying the KV cache on every token, for the transformers backend on CPU.

Two copies dominated a long completion's decoding (GSM8K's chains of thought ran at 14% of
the fp32 matrix-product ceiling): transformers' DynamicCache appends each token's keys and
values with torch.cat, which copies the whole cache of every layer per token, and its sdpa
attention repeats the grouped key/value heads to the query heads (3x the cache for SmolLM2)
whenever there is a padding mask, which a batch always has. Here a cache layer appends into
spare capacity (GrowingLayer) and the attention hands grouped heads to torch's SDPA as they
are (`enable_gqa`), which on CPU gives bitwise the same output as the repeated heads.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

GROUPED_SDPA = "bt_grouped_sdpa"
MIN_SPARE = 128  # tokens of room a layer adds when it grows: one regrowth per 128 generated, at least
Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), [batch, heads, tokens, dim]


def grouped_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                 is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention for a decoder, with grouped heads passed through instead of repeated."""
    causal = query.shape[2] > 1 and attention_mask is None and (
        is_causal if is_causal is not None else getattr(module, "is_causal", True))
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(GROUPED_SDPA, grouped_sdpa)
AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of buffers with room to append into: a new
    token is written in place, and the buffers are reallocated (with room again) only when full."""

    def __init__(self) -> None:
        super().__init__()
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self._length + key_states.shape[-2]
        if self._buffers is None or end > self._buffers[0].shape[-2]:
            self._grow(key_states, value_states, end)
        keys, values = self._buffers
        keys[:, :, self._length:end] = key_states
        values[:, :, self._length:end] = value_states
        self._view(end)
        return self.keys, self.values

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        capacity = needed + max(MIN_SPARE, needed // 4)
        grown = tuple(torch.empty((*states.shape[:2], capacity, states.shape[-1]), dtype=states.dtype,
                                  device=states.device) for states in (key_states, value_states))
        if self._buffers is not None:
            for old, new in zip(self._buffers, grown):
                new[:, :, :self._length] = old[:, :, :self._length]
        self._buffers = grown

    def _view(self, length: int) -> None:
        self._length = length
        self.keys, self.values = (buffer[:, :, :length] for buffer in self._buffers)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0:
            self._view(self._length + tokens_to_remove)
        elif 0 < tokens_to_remove < self._length:  # the legacy form: the length to keep
            self._view(tokens_to_remove)

    def reset(self) -> None:
        self._buffers, self._length = None, 0
        super().reset()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._adopt(self.keys.repeat_interleave(repeats, dim=0), self.values.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._adopt(self.keys[indices], self.values[indices])

    def _adopt(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self._buffers, self._length = None, 0
        self.update(keys, values)


def supports(model: torch.nn.Module) -> bool:
    """Only full attention: a sliding-window layer's cache is neither grown, cropped nor repeated as is."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


def growing_cache(model: torch.nn.Module, layers: Layers | None = None) -> DynamicCache:
    """A DynamicCache of GrowingLayers for `model`, holding `layers` (copied in) when given."""
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer() for _ in cache.layers]
    for layer, (keys, values) in zip(cache.layers, layers or []):
        layer.update(keys, values)
    return cache
