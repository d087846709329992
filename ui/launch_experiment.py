"""The Launch page's advanced settings: a run's resolved defaults in, `resolve_config` overrides out.

Only values the user changed become overrides, so an experiment's stored grid says what was
customized and everything else keeps following the budget.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from bt_core.lm.backends import BACKENDS
from bt_core.serve.config import RunConfig


def advanced_settings(defaults: RunConfig) -> dict[str, Any]:
    left, right = st.columns(2)
    prompts = {"num_candidates": left.number_input("Random-search candidates", 0, 50, defaults.num_candidates),
               "max_bootstrapped_demos": left.number_input("Max bootstrapped demos per module", 0, 16,
                                                           defaults.max_bootstrapped_demos),
               "max_labeled_demos": left.number_input("Max demos per module", 0, 16, defaults.max_labeled_demos)}
    lora = {"rank": right.number_input("LoRA rank", 1, 256, defaults.lora.rank),
            "learning_rate": right.number_input("LoRA learning rate", 1e-7, 1e-1, float(defaults.lora.learning_rate),
                                                1e-5, "%.1e"),
            "epochs": right.number_input("LoRA epochs", 1, 50, defaults.lora.epochs)}
    backend = left.selectbox("Inference backend", BACKENDS, help="The machine that executes the run resolves auto: "
                             "vLLM on a CUDA GPU that can serve the model, else transformers (hf) but for a task with "
                             "long prompts (HotPotQA), which vLLM prefills several times faster. On CPU, vllm is "
                             "faster for prompt-only strategies and slower once a w step adds an adapter to short "
                             "prompts. hf-bf16 is transformers in bf16: 2-3x faster on a CPU with bf16 instructions "
                             "(AVX512-BF16, AMX), and it chooses other programs than fp32 does.")
    overrides: dict[str, Any] = {k: v for k, v in prompts.items() if v != getattr(defaults, k)}
    if backend != "auto":
        overrides["backend"] = backend
    if any(v != getattr(defaults.lora, k) for k, v in lora.items()):
        overrides["lora"] = lora
    return overrides
