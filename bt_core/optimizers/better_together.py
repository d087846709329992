"""BetterTogether: chain prompt (p) and weight (w) optimization steps as a strategy string.

Each step starts from the program and LM the previous step produced, on a freshly shuffled
trainset. `steps()` is the one loop: `compile` walks it here, and the runner walks it too,
checkpointing after each step and restoring finished ones, so the library and the product
run the same chain. The strategy's result is its final program, as in the paper's Table 1
(DSPy 3.x instead returns the step best on validation); every step's program and validation
score stays in `candidate_programs`, and `best_on_validation` names the best of them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, runtime_checkable

from bt_core.evaluate import Metric, evaluate
from bt_core.modules import Example, Module
from bt_core.optimizers.random_search import FIXED_CANDIDATES
from bt_core.strategy import format_strategy, parse_strategy
from bt_core.tasks.base import Sizes


class Optimizer(Protocol):
    def compile(self, student: Module, *, trainset: list[Example],
                valset: list[Example] | None = None) -> Module: ...


@runtime_checkable
class ScoresItsChoice(Protocol):
    """An optimizer that scores the program it returns on validation while choosing it (random search)."""

    def validation_score(self, valset: list[Example]) -> float | None: ...


@dataclass(frozen=True)
class PlannedStep:
    index: int  # 0 is the unoptimized program, 1.. the strategy's steps
    kind: str  # "vanilla" or the optimizer's name: "p", "w", ...
    label: str  # the strategy prefix that produces it: "vanilla", "p", "p -> w", ...
    apply: Callable[[Module], Module]  # the previous step's program -> this step's
    optimizer: Optimizer | None = None  # None for the vanilla step

    def known_val_score(self, valset: list[Example]) -> float | None:
        """The score the step's optimizer gave its result on all of `valset` after apply(), so
        that scoring the step does not run the validation set again; None when it has none."""
        return self.optimizer.validation_score(valset) if isinstance(self.optimizer, ScoresItsChoice) else None


@dataclass
class StepCandidate:
    strategy: str  # the prefix that produced it: "vanilla", "p", "p -> w", ...
    program: Module
    score: float  # on the validation set


@dataclass
class BetterTogether:
    metric: Metric
    optimizers: dict[str, Optimizer]  # step name -> optimizer; "p" and "w" in the paper
    strategy: str = "p -> w -> p"
    seed: int = 0  # trainset shuffles between steps and the carved validation set
    valset_ratio: float = 0.1  # used to carve a validation set when none is given
    threads: int = 16
    candidate_programs: list[StepCandidate] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.kinds = parse_strategy(self.strategy, tuple(self.optimizers))

    def compile(self, student: Module, *, trainset: list[Example],
                valset: list[Example] | None = None) -> Module:
        """The chain's final program; each step's program and validation score in candidate_programs."""
        trainset, valset = self._split(trainset, valset)
        program = student
        self.candidate_programs = []
        for step in self.steps(trainset, valset):
            program = step.apply(program)
            score = step.known_val_score(valset)
            self.candidate_programs.append(StepCandidate(
                step.label, program, self._score(program, valset) if score is None else score))
        return program

    @property
    def best_on_validation(self) -> StepCandidate:
        """The step that scored best on validation (the first of equals), for the record."""
        return max(self.candidate_programs, key=lambda c: c.score)

    def steps(self, trainset: list[Example], valset: list[Example]) -> Iterator[PlannedStep]:
        """Step 0 (the program as it is), then each strategy step on a trainset shuffled anew."""
        yield PlannedStep(0, "vanilla", "vanilla", lambda program: program.deepcopy())
        for index, kind in enumerate(self.kinds, 1):
            shuffled = random.Random(self.seed * 1000 + index - 1).sample(trainset, len(trainset))
            optimizer = self.optimizers[kind]
            yield PlannedStep(index, kind, format_strategy(self.kinds[:index]),
                              lambda program, o=optimizer, t=shuffled: o.compile(program, trainset=t, valset=valset),
                              optimizer)

    def _split(self, trainset: list[Example], valset: list[Example] | None):
        if valset:
            return trainset, valset
        shuffled = random.Random(self.seed).sample(trainset, len(trainset))
        cut = max(1, round(len(shuffled) * self.valset_ratio))
        return shuffled[cut:], shuffled[:cut]

    def _score(self, program: Module, valset: list[Example]) -> float:
        return evaluate(program, valset, self.metric, split="val", threads=self.threads).score


def lm_calls_at_most(sizes: Sizes, strategy: str, num_candidates: int, modules: int) -> int:
    """How many LM calls one run makes before caching, at most: the Launch page's unit of work.

    Every step scores val and test; p bootstraps each non-fixed candidate on its train
    subsample and scores every candidate on its val subsample (both may stop early); w runs
    the train set once.
    """
    p_train, p_val = sizes.p_train or sizes.train, sizes.p_val or sizes.val
    calls = sizes.val + sizes.test
    for step in parse_strategy(strategy):
        calls += sizes.val + sizes.test
        calls += ((1 + num_candidates) * p_train + (FIXED_CANDIDATES + num_candidates) * p_val if step == "p"
                  else sizes.train)
    return calls * modules
