"""Tokens per second of the embedded model on each inference path, with ratios, in one run.

Every path generates for the same prompts with the same greedy settings and no LM-call
cache; batched paths go through LM.chat from one thread per call, exactly as an evaluation
does. Two workloads:

- long-form answers (every call writes about the same number of tokens): transformers one
  call at a time (the baseline), transformers batched, and vLLM batched, each with and
  without a LoRA adapter (transformers merges it; vLLM sends it as a LoRARequest);
- Iris prompts that share a long prefix of labeled demos, as a p step's candidate does:
  transformers batched, and vLLM with prefix caching off (the request skips reading the
  cache) and on.

    python benchmarks/lm_throughput.py [--model smollm2-135m] [--tokens 64] [--calls 16]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bt_core import adapter
from bt_core.lm.base import LM, Completion, LoraConfig, Messages, SamplingParams
from bt_core.lm.hf import HFLM
from bt_core.lm.models import ModelSpec, resolve_model
from bt_core.tasks import get_task

ADAPTER = LoraConfig(rank=16, alpha=32, epochs=1, batch_size=4)  # the default budget's shape


def long_form(n: int) -> list[Messages]:
    topics = ["irises", "rivers", "bridges", "owls", "glaciers", "violins", "deserts", "comets"]
    return [[{"role": "user", "content": f"Write a detailed paragraph about {topics[i % len(topics)]}, part {i}."}]
            for i in range(n)]


def shared_prefix(n: int, demos: int = 12) -> list[Messages]:
    """Iris questions after the same labeled demos: one long prefix, a short distinct tail."""
    iris = get_task("iris")
    splits = iris.load(demos, 0, n, seed=0)
    signature = iris.program().classify.signature
    return [adapter.render(signature, [dict(d) for d in splits.train], e.inputs()) for e in splits.test]


def timed(run) -> tuple[float, float]:
    """(completion tokens per second, seconds)."""
    start = time.perf_counter()
    completions: list[Completion] = run()
    seconds = time.perf_counter() - start
    return sum(c.completion_tokens for c in completions) / seconds, seconds


def batched(lm: LM, batch: list[Messages], params: SamplingParams) -> tuple[float, float]:
    with ThreadPoolExecutor(len(batch)) as pool:
        return timed(lambda: list(pool.map(lambda m: lm.chat(m, params), batch)))


def vllm_prefix(lm: LM, batch: list[Messages], params: SamplingParams, cached: bool) -> tuple[float, float]:
    """One batched chat straight on the engine: the only switch is whether requests read the prefix cache."""
    from vllm import SamplingParams as VllmSampling

    from bt_core.lm.hf import finish

    llm = lm.engine()
    llm.reset_prefix_cache()
    sampling = VllmSampling(max_tokens=params.max_new_tokens, temperature=0, skip_reading_prefix_cache=not cached)
    tok = llm.get_tokenizer()
    return timed(lambda: [finish(tok, o.outputs[0].text, len(o.prompt_token_ids), 0.0, params)
                          for o in llm.chat(batch, sampling, use_tqdm=False)])


def report(name: str, result: tuple[float, float], baselines: dict[str, float]) -> None:
    """One line as soon as it is measured; ratios against the baselines measured before it."""
    rate, seconds = result
    ratios = "  ".join(f"{rate / base:5.2f}x {label}" for label, base in baselines.items())
    print(f"  {name:<34}: {rate:7.1f} tokens/s  ({seconds:5.1f} s)   {ratios}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--calls", type=int, default=16)
    args = parser.parse_args()
    spec = resolve_model(args.model)
    params = SamplingParams(max_new_tokens=args.tokens)
    hf = HFLM(spec, max_batch_size=args.calls)  # no cache: every call generates
    adapter_dir = tempfile.mkdtemp(prefix="bt-bench-adapter-")
    hf.train_adapter([[*m, {"role": "assistant", "content": "A short answer."}] for m in long_form(8)], ADAPTER,
                     Path(adapter_dir))
    vllm = vllm_lm(spec, args.calls)
    views = {"hf": hf, "hf adapter": hf.with_adapter(adapter_dir)}
    if vllm is not None:
        views |= {"vllm": vllm, "vllm adapter": vllm.with_adapter(adapter_dir)}
    for lm in views.values():  # warm up: load, merge or send the adapter once before timing
        lm.generate(long_form(1), SamplingParams(max_new_tokens=4))
    print(f"model {args.model}, {args.calls} calls, up to {args.tokens} new tokens, greedy, "
          f"hf on {hf.model().device}, vLLM {'not installed' if vllm is None else 'on its engine'}", flush=True)

    prompts = long_form(args.calls)
    print("long-form answers:")
    baselines: dict[str, float] = {}
    one = timed(lambda: [hf.generate([m], params)[0] for m in prompts])
    report("transformers one call at a time", one, baselines)
    baselines["one at a time"] = one[0]
    both = batched(hf, prompts, params)
    report(f"transformers {args.calls} batched", both, baselines)
    baselines["hf batched"] = both[0]
    report(f"transformers {args.calls} batched, adapter", batched(views["hf adapter"], prompts, params), baselines)
    if vllm is not None:
        report(f"vLLM {args.calls} batched", batched(vllm, prompts, params), baselines)
        report(f"vLLM {args.calls} batched, adapter", batched(views["vllm adapter"], prompts, params), baselines)

    prompts = shared_prefix(args.calls)
    print(f"Iris prompts sharing {len(prompts[0]) - 2} demo turns ({prompt_tokens(hf, prompts[0])} prompt tokens "
          "in the first):")
    both = batched(hf, prompts, params)
    report(f"transformers {args.calls} batched", both, {})
    if vllm is not None:
        off = vllm_prefix(vllm, prompts, params, cached=False)
        report("vLLM, prefix caching off", off, {"hf batched": both[0]})
        report("vLLM, prefix caching on", vllm_prefix(vllm, prompts, params, cached=True),
               {"hf batched": both[0], "prefix off": off[0]})


def vllm_lm(spec: ModelSpec, calls: int) -> LM | None:
    if importlib.util.find_spec("vllm") is None:
        return None
    from bt_core.lm.vllm.backend import VLLMLM

    return VLLMLM(spec, lora_rank=ADAPTER.rank, max_batch_size=calls)


def prompt_tokens(hf: HFLM, messages: Messages) -> int:
    text = hf.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(hf.tokenizer(text, add_special_tokens=False).input_ids)


if __name__ == "__main__":
    main()
