"""BetterTogether: chain prompt (p) and weight (w) optimization steps as a strategy string.

Each step starts from the program and LM the previous step produced, on a freshly shuffled
trainset; every step's program is scored on the validation set. `compile` returns the best
of them and keeps all in `candidate_programs`, as DSPy does; `run_step` is public so the
runner can execute and checkpoint one step at a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from bt_core.evaluate import Metric, evaluate
from bt_core.modules import Example, Module
from bt_core.strategy import format_strategy, parse_strategy


class Optimizer(Protocol):
    def compile(self, student: Module, *, trainset: list[Example],
                valset: list[Example] | None = None) -> Module: ...


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
        self.steps = parse_strategy(self.strategy, tuple(self.optimizers))

    def compile(self, student: Module, *, trainset: list[Example],
                valset: list[Example] | None = None) -> Module:
        trainset, valset = self._split(trainset, valset)
        program = student.deepcopy()
        self.candidate_programs = [StepCandidate("vanilla", program, self._score(program, valset))]
        for index in range(len(self.steps)):
            program = self.run_step(index, program, trainset, valset)
            prefix = format_strategy(self.steps[: index + 1])
            self.candidate_programs.append(StepCandidate(prefix, program, self._score(program, valset)))
        return max(self.candidate_programs, key=lambda c: c.score).program

    def run_step(self, index: int, program: Module, trainset: list[Example],
                 valset: list[Example]) -> Module:
        """Step `index` of the strategy, on a trainset shuffled anew for this step."""
        shuffled = random.Random(self.seed * 1000 + index).sample(trainset, len(trainset))
        return self.optimizers[self.steps[index]].compile(program, trainset=shuffled, valset=valset)

    def _split(self, trainset: list[Example], valset: list[Example] | None):
        if valset:
            return trainset, valset
        shuffled = random.Random(self.seed).sample(trainset, len(trainset))
        cut = max(1, round(len(shuffled) * self.valset_ratio))
        return shuffled[cut:], shuffled[:cut]

    def _score(self, program: Module, valset: list[Example]) -> float:
        return evaluate(program, valset, self.metric, split="val", threads=self.threads).score
