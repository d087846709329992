"""The task interface and registry.

A task owns everything specific to a benchmark: how to load and split its data (by seed, so
the same seed gives the same splits), the program the paper runs on it, and its metric.
Registering is one decorator on the class.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from bt_core.modules import Example, Module, Prediction


class Sizes(BaseModel):
    train: int  # examples bootstrapping and fine-tuning draw from
    val: int  # examples that score candidate programs and steps
    test: int  # held-out examples scored after every step
    p_train: int | None = None  # prompt optimization's train subsample (paper: 100; Iris 15)
    p_val: int | None = None  # prompt optimization's validation subsample (paper: 250; Iris 35)


@dataclass
class Splits:
    train: list[Example]
    val: list[Example]
    test: list[Example]


class Task(ABC):
    name: str = ""
    description: str = ""
    sizes: dict[str, Sizes] = {}  # per budget: "smoke", "default", "paper"
    # Long prompts (retrieved passages) and short answers: prefill, not decoding, is the cost.
    # On CPU `--backend auto` then takes vLLM, whose prefill and prefix cache outweigh its slower
    # LoRA decoding (see bt_core/lm/backends.py).
    prefill_bound: bool = False
    # The predictors in program(): what a run's LM calls scale with. Declared, so that the Launch
    # page's estimate needs no program built (HotPotQA's builds a BM25 index).
    modules: int = 1

    @abstractmethod
    def load(self, train: int, val: int, test: int, seed: int) -> Splits:
        """Return splits of these sizes, the same for the same seed."""

    @abstractmethod
    def program(self) -> Module:
        """A fresh, unoptimized program for this task."""

    @abstractmethod
    def metric(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        """Score in [0, 1]; with a trace (bootstrapping) it may be stricter."""

    def details(self, example: Example, prediction: Prediction) -> dict[str, float]:
        """Secondary per-example measures stored beside the score (F1, retrieval recall...)."""
        return {}


_TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    _TASKS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    """Import every file of the bt_core.tasks package, so a new task is one file dropped there."""
    import bt_core.tasks as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def task_names() -> list[str]:
    _load_builtin()
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    _load_builtin()
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]()


def stratified_split(items: Sequence[Example], sizes: Sequence[int], seed: int,
                     label: Callable[[Example], Any]) -> list[list[Example]]:
    """Disjoint splits of the given sizes whose label mix follows the whole set's."""
    if sum(sizes) > len(items):
        raise ValueError(f"asked for {sum(sizes)} examples but the task has {len(items)}")
    rng = random.Random(seed)
    by_label: dict[Any, list[Example]] = {}
    for item in items:
        by_label.setdefault(label(item), []).append(item)
    for group in by_label.values():
        rng.shuffle(group)
    # Interleave labels round-robin so every prefix is balanced, then cut.
    interleaved = [g[i] for i in range(max(map(len, by_label.values())))
                   for g in by_label.values() if i < len(g)]
    out, start = [], 0
    for size in sizes:
        chunk = interleaved[start:start + size]
        rng.shuffle(chunk)
        out.append(chunk)
        start += size
    return out
