"""Attention for the transformers backend on CPU: grouped key/value heads go to SDPA as they are.

transformers' `sdpa` attention repeats each key/value head for its group of query heads
whenever a mask is present (its CUDA kernels need that), and a batch of calls of different
lengths always carries a padding mask. For a decoding step that copy is the whole cache,
per layer, and after long few-shot prompts it dominated the step (benchmarks/decode_speed.py).
PyTorch's CPU SDPA takes the grouped heads with a mask directly (`enable_gqa`), with equal results.
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
    """transformers' sdpa, except that a masked call over grouped heads skips the repeat."""
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    special = kwargs.get("position_bias") is not None or kwargs.get("cache") is not None  # left to transformers
    if attention_mask is None or not grouped or special:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                         dropout_p=kwargs.get("dropout", 0.0), scale=kwargs.get("scaling"),
                                         enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, grouped_sdpa)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # the same masks as `sdpa`
