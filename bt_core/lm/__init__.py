"""LM backends behind one interface: batched chat generation, an optional LoRA adapter, a cache."""

from bt_core.lm.base import LM, Completion, SamplingParams

__all__ = ["LM", "Completion", "SamplingParams"]
