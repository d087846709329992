"""The LM interface every backend implements, and the shared path every call takes.

A call goes chat() -> batcher (coalesces concurrent calls from evaluation threads) ->
generate() -> cache lookup -> the backend's _generate() for the misses only. Backends only
write _generate, with_adapter and train_adapter; caching, batching and bookkeeping are here
once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable

from annotated_types import Ge, Gt, Lt

if TYPE_CHECKING:
    from bt_core.lm.batching import Item
    from bt_core.lm.cache import LMCache

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256  # hard cap on generated tokens per call
    temperature: float = 0.0  # 0 means greedy, which makes runs reproducible and cacheable
    stop_after_field: str | None = None  # end once this `Label:` line is complete (see stopping.py)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # wall time from its prefill's start to its last token (0 for a cache hit)
    cached: bool = False
    # Prompt tokens the model prefilled for this call: fewer than prompt_tokens (those sent) when a
    # shared prefix was computed once for its batch (counted on the batch's first call) or kept from
    # the last batch; 0 for a cache hit. None: all of prompt_tokens. The LM-call cache never stores it.
    computed_prompt_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.computed_prompt_tokens is None:
            self.computed_prompt_tokens = self.prompt_tokens


@dataclass
class LoraConfig:
    """A LoRA job's settings; plain data, so the dashboard and the run config read it without torch.
    The bounds are checked where a run config is validated (pydantic reads them), so a rank of 0
    is a one-line error at launch, not a failure inside peft."""

    rank: Annotated[int, Ge(1)] = 16  # LoRA rank r
    alpha: Annotated[int, Ge(1)] = 32  # scaling numerator; effective scale alpha / rank
    dropout: Annotated[float, Ge(0), Lt(1)] = 0.0  # LoRA dropout, 0 as in the paper
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    learning_rate: Annotated[float, Gt(0)] = 3e-4  # far above the paper's 1e-5: a 135M model on CPU gets few steps
    epochs: Annotated[int, Ge(1)] = 3  # passes over the SFT data
    batch_size: Annotated[int, Ge(1)] = 4  # conversations per optimizer step
    max_length: Annotated[int, Ge(64)] = 1024  # tokens per conversation; longer ones are shortened in the middle
    seed: Annotated[int, Ge(0)] = 0  # shuffling and LoRA init


@dataclass
class TrainingLog:
    """What a LoRA job reports, stored in the `trainings` table."""

    adapter_path: str
    losses: list[tuple[int, float]]  # (optimizer step, mean loss since last log)
    seconds: float
    examples: int
    shortened: int = 0  # conversations shortened to fit the LoRA max_length
    tokens_cut: int = 0  # prompt tokens those conversations lost


class LM(ABC):
    """A chat model, possibly with a LoRA adapter, that generates for batches of conversations."""

    backend: str  # names the implementation in cache keys: backends decode the same model differently
    dtype: str = "float32"  # what the model computes in, for the run profile's ceiling

    def __init__(self, name: str, adapter_path: str | None = None,
                 cache: LMCache | None = None, max_batch_size: int = 16) -> None:
        self.name = name
        self.adapter_path = adapter_path
        self.cache = cache
        self.max_batch_size = max_batch_size
        self.batches: list[int] = []  # size of every _generate call, so tests can see batching
        self._batcher = None
        self._batcher_lock = threading.Lock()

    @abstractmethod
    def _generate(self, batch: list[Messages], params: SamplingParams) -> list[Completion]:
        """Generate one completion per conversation, in order."""

    @abstractmethod
    def with_adapter(self, adapter_path: str | None) -> LM:
        """The same base model with this adapter (None: the base model)."""

    @abstractmethod
    def train_adapter(self, conversations: list[Messages], config: LoraConfig, out_dir: Path,
                      on_log: Callable[[int, float], None] | None = None,
                      start_adapter: str | None = None) -> TrainingLog:
        """Fine-tune a LoRA adapter of the base model on chat conversations (loss on the last
        assistant turn), from `start_adapter`'s weights when given, else from a fresh adapter."""

    def parameter_count(self) -> int | None:
        """The model's parameters, for a run profile's FLOP rates; None where the backend cannot tell cheaply."""
        return None

    @property
    def identity(self) -> str:
        """What the cache keys on: the backend, the model and the adapter's content, not its path."""
        return f"{self.backend}|{self.name}|{adapter_fingerprint(self.adapter_path)}"

    def generate(self, batch: list[Messages], params: SamplingParams) -> list[Completion]:
        keys = [self._cache_key(m, params) for m in batch]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        misses = [i for i, k in enumerate(keys) if k not in found]
        fresh: list[Completion] = []
        for start in range(0, len(misses), self.max_batch_size):
            chunk = misses[start:start + self.max_batch_size]
            self.batches.append(len(chunk))
            fresh.extend(self._generate([batch[i] for i in chunk], params))
        if self.cache is not None and fresh:
            self.cache.put_many({keys[i]: c for i, c in zip(misses, fresh)})
        by_index = dict(zip(misses, fresh))
        return [by_index[i] if i in by_index else as_hit(found[k]) for i, k in enumerate(keys)]

    def chat(self, messages: Messages, params: SamplingParams) -> Completion:
        """One call; concurrent callers in other threads share a batched generate."""
        with self._batcher_lock:  # evaluation threads arrive together; one batcher must serve them all
            if self._batcher is None:
                from bt_core.lm.batching import CallBatcher
                self._batcher = CallBatcher(self.serve_calls, self.max_batch_size)
        return self._batcher.submit(messages, params)

    def serve_calls(self, calls: list[Item], arrivals: Callable[[], list[Item]]) -> None:
        """Complete queued chat calls (setting each future): those with the same sampling parameters
        as one generate. A backend that can take calls while it decodes overrides this and takes
        `arrivals()` (the calls queued since) between its steps."""
        for params in dict.fromkeys(p for _, p, _ in calls):
            group = [call for call in calls if call[1] == params]
            for (_, _, future), completion in zip(group, self.generate([m for m, _, _ in group], params)):
                future.set_result(completion)

    def _cache_key(self, messages: Messages, params: SamplingParams) -> str:
        blob = json.dumps([self.identity, messages, asdict(params)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def prefill(messages: Messages) -> str:
    """The assistant turn a conversation ends in, which the model continues ("" if it ends with the user)."""
    return messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""


def chat_prompt(tokenizer, messages: Messages) -> str:
    """The prompt text: a new assistant turn opened, or the final assistant turn left open to continue."""
    open_turn = messages[-1]["role"] == "assistant"
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not open_turn,
                                         continue_final_message=open_turn)


def joined(first: Completion, turn: str, more: Completion) -> Completion:
    """A continued call as one: the whole assistant turn, both calls' tokens and time."""
    return Completion(turn + more.text, first.prompt_tokens + more.prompt_tokens,
                      first.completion_tokens + more.completion_tokens, first.latency_s + more.latency_s,
                      cached=first.cached and more.cached,
                      computed_prompt_tokens=first.computed_prompt_tokens + more.computed_prompt_tokens)


def as_hit(completion: Completion) -> Completion:
    return Completion(completion.text, completion.prompt_tokens, completion.completion_tokens,
                      0.0, cached=True, computed_prompt_tokens=0)


def adapter_fingerprint(adapter_path: str | None) -> str:
    """A hash of the adapter folder's files. Every call's cache key carries it, so the files are
    read once per version (each file's name, size and modification time), not once per call."""
    if adapter_path is None:
        return "base"
    files = sorted((str(file), file.stat()) for file in Path(adapter_path).glob("*") if file.is_file())
    return _fingerprint(tuple((path, stat.st_size, stat.st_mtime_ns) for path, stat in files))


@lru_cache(maxsize=64)
def _fingerprint(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]

