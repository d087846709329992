"""LM backends behind one interface: batched chat generation, an optional LoRA adapter, a cache."""

import os

from bt_core.lm.base import LM, Completion, SamplingParams

# vLLM logs every engine step's setup at INFO on stdout, inside our CLI's output; warnings stay.
# Set before any vLLM import (backend checks import it too); the engine's processes inherit it.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

__all__ = ["LM", "Completion", "SamplingParams"]
