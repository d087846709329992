"""BootstrapFewShotWithRandomSearch: score several demo sets on validation, keep the best.

The candidates follow the paper and DSPy: zero-shot, labeled demos only, bootstrapped demos
in training order, then `num_candidates` bootstraps over reshuffled training sets with a
random number of demos (1 to max_bootstrapped_demos; none when that is 0). Every candidate and
its score stays in `self.candidates`. A candidate stops being scored once even a perfect score on
the examples left could not beat the best so far, which chooses the same program for less work;
it keeps how far it got and its ceiling instead of a score.
"""

from __future__ import annotations

import random
from dataclasses import KW_ONLY, dataclass, field

from bt_core.evaluate import Metric, evaluate
from bt_core.modules import Example, Module
from bt_core.optimizers.bootstrap import BootstrapFewShot, LabeledFewShot
from bt_core.recording import Count, recorder


@dataclass
class Candidate:
    label: str
    program: Module
    score: float | None  # mean on the whole valset; None when scoring stopped early
    scored: int  # validation examples it was scored on
    ceiling: float  # the most its score can be: the score itself unless it stopped early
    program_id: int | None = None


FIXED_CANDIDATES = 3  # zero-shot, labeled demos, bootstrapped in training order: before the random ones


@dataclass
class BootstrapFewShotWithRandomSearch:
    metric: Metric
    _: KW_ONLY  # seven numbers: by name, so two swapped settings cannot pass silently
    num_candidates: int = 3  # reshuffled bootstraps beyond the three fixed candidates
    max_bootstrapped_demos: int = 3  # per predictor
    max_labeled_demos: int = 3  # per predictor, bootstrapped ones included
    seed: int = 0  # shuffles, demo counts and labeled samples
    max_train: int | None = None  # subsample of the trainset (the paper's 100; Iris 15)
    max_val: int | None = None  # subsample of the valset (the paper's 250; Iris 35)
    threads: int = 16
    candidates: list[Candidate] = field(default_factory=list, init=False)

    def compile(self, student: Module, *, trainset: list[Example], valset: list[Example] | None = None) -> Module:
        if not valset:
            raise ValueError("random search needs a validation set to score candidates")
        trainset, valset = trainset[: self.max_train], valset[: self.max_val]
        self.candidates = []
        for label, make in self._plan(trainset):
            done, total = len(self.candidates), self.num_candidates + FIXED_CANDIDATES
            recorder().progress(f"candidate {done + 1}/{total}: {label}", Count("candidates", done, total))
            self.candidates.append(self._score(label, make(student), valset))
        best = self._best()
        assert best is not None, "the first candidate has nothing to beat, so it is scored in full"
        return best.program

    def validation_score(self, valset: list[Example]) -> float | None:
        """The chosen program's score, when the search scored it on every example of `valset` (its
        validation subsample was the whole set); None otherwise."""
        best = self._best()
        return best.score if best is not None and best.scored == len(valset) else None

    def _best(self) -> Candidate | None:
        """The best candidate scored on the whole valset (its ceiling is its score); max keeps the
        first of equals."""
        return max((c for c in self.candidates if c.score is not None), key=lambda c: c.ceiling, default=None)

    def _plan(self, trainset: list[Example]):
        """(label, student -> candidate program) in the order DSPy uses (its seeds -3, -2, -1, 0..)."""
        yield "zero-shot", lambda s: s.reset_copy()
        yield "labeled demos", lambda s: LabeledFewShot(self.max_labeled_demos, self.seed).compile(s, trainset=trainset)
        yield "bootstrapped", lambda s: self._bootstrap(s, trainset, self.max_bootstrapped_demos, self.seed)
        for index in range(self.num_candidates):
            rng = random.Random(self.seed * 1000 + index)
            shuffled = rng.sample(trainset, len(trainset))
            size = rng.randint(min(1, self.max_bootstrapped_demos), self.max_bootstrapped_demos)
            seed = self.seed * 1000 + index
            yield (f"random #{index + 1} ({size} demos)",
                   lambda s, t=shuffled, n=size, sd=seed: self._bootstrap(s, t, n, sd))

    def _bootstrap(self, student: Module, trainset: list[Example], demos: int, seed: int) -> Module:
        return BootstrapFewShot(self.metric, max_bootstrapped_demos=demos, max_labeled_demos=self.max_labeled_demos,
                                seed=seed, threads=self.threads).compile(student, trainset=trainset)

    def _score(self, label: str, program: Module, valset: list[Example]) -> Candidate:
        program_id = recorder().program(program, label)
        best = self._best()
        result = evaluate(program, valset, self.metric, split="val", program_id=program_id, threads=self.threads,
                          must_beat=best.ceiling if best else None)
        recorder().program_score(program_id, result)
        return Candidate(label, program, result.score if result.complete else None, len(result.results),
                         result.ceiling, program_id)
