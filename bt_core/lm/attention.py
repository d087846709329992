"""Attention for the transformers backend on CPU: grouped key/value heads and shared prefixes read once.

transformers' `sdpa` attention repeats each key/value head for its group of query heads
whenever a mask is present (its CUDA kernels need that), and a batch of calls of different
lengths always carries a padding mask. For a decoding step that copy is the whole cache,
per layer, and it cost more than the rest of the step (benchmarks/decode_speed.py). PyTorch's
CPU SDPA takes the grouped heads with a mask directly (`enable_gqa`), with equal results.

After a prefix that every row shares (kv_cache.SharedPrefixLayer: a candidate program's
instructions and demos), a decoding step computes attention in two parts, merged by their
log-sum-exp as cascade attention does: every row's query against the one prefix, as a single
batch-1 product, and each row against its own tokens. It then reads the prefix's keys and values
once for the batch, not once per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from bt_core.lm.kv_cache import SharedPrefix, shared_prefix

NAME = "bt_grouped_sdpa"


def reads_shared_prefix(model: torch.nn.Module) -> bool:
    """Whether the model computes attention here, which reads a SharedPrefixLayer's prefix."""
    return model.config._attn_implementation == NAME


def grouped_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa, except that a masked call over grouped heads skips the repeat, and a shared
    prefix is read once."""
    prefix = shared_prefix(key)
    if prefix is not None:
        return _after_prefix(query, key, value, attention_mask, prefix, kwargs.get("scaling")), None
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    special = kwargs.get("position_bias") is not None or kwargs.get("cache") is not None  # left to transformers
    if attention_mask is None or not grouped or special:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                         dropout_p=kwargs.get("dropout", 0.0), scale=kwargs.get("scaling"),
                                         enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def _after_prefix(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                  prefix: SharedPrefix, scale: float | None) -> torch.Tensor:
    """Attention over [prefix | own keys]: query [batch, heads, q, dim], key and value [batch, kv heads, own, dim],
    mask [batch, 1, q, prefix + own] (a boolean keep-mask) or None. Returns [batch, q, heads, dim]."""
    batch, heads, q, dim = query.shape
    if q > 1:  # the suffixes' prefill, once a call: SDPA's kernel over per-row copies of the prefix is faster
        keys = torch.cat([prefix.keys.expand(batch, -1, -1, -1), key], dim=2)
        values = torch.cat([prefix.values.expand(batch, -1, -1, -1), value], dim=2)
        if mask is None:  # no padding: causal, the queries being the last q keys
            mask = torch.ones(q, keys.shape[2], dtype=torch.bool, device=query.device).tril(keys.shape[2] - q)
        out = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scale, enable_gqa=True)
        return out.transpose(1, 2).contiguous()
    kv_heads = key.shape[1]
    scale = dim ** -0.5 if scale is None else scale
    # query heads grouped under their key/value head (head h reads kv head h // group, as repeat_kv does)
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    own_mask = None if mask is None else mask[..., prefix.length:]
    own, own_lse = _part(grouped, key, value, own_mask, scale)
    folded = grouped.transpose(0, 1).reshape(1, kv_heads, -1, dim)  # every row's query, one batch-1 product
    shared, shared_lse = _part(folded, prefix.keys, prefix.values, None, scale)
    shared = shared.reshape(kv_heads, batch, -1, dim).transpose(0, 1)
    shared_lse = shared_lse.reshape(kv_heads, batch, -1, 1).transpose(0, 1)
    top = torch.maximum(own_lse, shared_lse)  # the prefix's part is finite: every row attends to all of it
    own_weight, shared_weight = torch.exp(own_lse - top), torch.exp(shared_lse - top)
    out = (own * own_weight + shared * shared_weight) / (own_weight + shared_weight)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous()


def _part(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, scale: float
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention over one part of the keys, and the log-sum-exp of its scores, for merging parts.
    A query that may see none of the part's keys (a pad's row) gets weight 0 from it."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)
    weights = torch.exp(scores - lse).nan_to_num(0.0)
    return torch.matmul(weights, value), lse


AttentionInterface.register(NAME, grouped_sdpa)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # the same masks as `sdpa`
