"""Attention for the transformers backend on CPU: grouped key/value heads go to SDPA as they are.

transformers' `sdpa` attention repeats each key/value head for its group of query heads
whenever a mask is present (its CUDA kernels need that), and a batch of calls of different
lengths always carries a padding mask. For a decoding step that copy is the whole cache,
per layer, and after long few-shot prompts it dominated the step (benchmarks/decode_speed.py).
PyTorch's CPU SDPA takes the grouped heads with a mask directly (`enable_gqa`), with equal results.

A decoding step in bf16 (one query token per row) does not go to SDPA: its CPU kernel runs that
shape many times slower in bf16 than in fp32, and the step's two products, scores in fp32 over
keys cast to fp32, take a fraction of its time (benchmarks/decode_speed.py --backend hf-bf16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "bt_grouped_sdpa"


def grouped_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa, except that a masked call over grouped heads skips the repeat, and a bf16
    decoding step on CPU skips SDPA."""
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    special = kwargs.get("position_bias") is not None or kwargs.get("cache") is not None  # left to transformers
    one_token = query.shape[2] == 1 and query.dtype == torch.bfloat16 and query.device.type == "cpu"
    if one_token and not special and not module.training:
        return one_token_attention(query, key, value, attention_mask, kwargs.get("scaling")), None
    if attention_mask is None or not grouped or special:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                         dropout_p=kwargs.get("dropout", 0.0), scale=kwargs.get("scaling"),
                                         enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def one_token_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                        scale: float | None) -> torch.Tensor:
    """Attention of one new token per row over grouped key/value heads, [batch, 1, heads, dim] as
    transformers takes it: the scores and their softmax in fp32, as SDPA's kernels compute them,
    and the weighted sum of the values in their dtype."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim).float()  # a key/value head's queries together
    scores = torch.matmul(grouped, key.float().transpose(-1, -2)) * (dim ** -0.5 if scale is None else scale)
    if mask is not None:
        mask = mask[..., : key.shape[-2]]  # as transformers' sdpa cuts a mask built for a longer cache
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    out = torch.matmul(torch.softmax(scores, dim=-1).to(value.dtype), value)
    return out.reshape(batch, 1, heads, dim)


AttentionInterface.register(NAME, grouped_sdpa)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # the same masks as `sdpa`
