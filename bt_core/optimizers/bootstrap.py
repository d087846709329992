"""Few-shot demos: LabeledFewShot samples training examples; BootstrapFewShot keeps the
module-level inputs and outputs of the teacher's successful traces.

Bootstrapped demos are what teach a small model the output format and carry reasoning,
which labeled examples lack. When the teacher has no demos it gets labeled ones first (as in
DSPy), so that even a model that breaks the format zero-shot produces some successful traces.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bt_core.evaluate import Metric, run_example
from bt_core.modules import Call, Example, Module
from bt_core.recording import recorder


@dataclass
class LabeledFewShot:
    k: int = 3  # demos per predictor
    seed: int = 0  # which training examples are sampled

    def compile(self, student: Module, *, trainset: list[Example], valset=None) -> Module:
        program = student.reset_copy()
        sample = random.Random(self.seed).sample(trainset, min(self.k, len(trainset)))
        for predictor in program.predictors():
            predictor.demos = [Example(e) for e in sample]
        return program


@dataclass
class BootstrapFewShot:
    metric: Metric
    max_bootstrapped_demos: int = 3  # demos per predictor taken from successful traces
    max_labeled_demos: int = 3  # total demos per predictor; labeled examples fill what is left
    seed: int = 0  # the teacher's labeled demos
    threads: int = 16  # examples run concurrently

    def compile(self, student: Module, *, trainset: list[Example], valset=None,
                teacher: Module | None = None) -> Module:
        teacher = self._prepare_teacher(student, teacher, trainset)
        successes = self._bootstrap(teacher, trainset)
        program = student.reset_copy()
        used: set[int] = set()
        for name, predictor in program.named_predictors():
            for index, calls in successes:
                if len(predictor.demos) >= self.max_bootstrapped_demos:
                    break
                call = next((c for c in calls if c.module == name), None)
                if call is not None:
                    predictor.demos.append(Example({**call.inputs, **call.outputs}))
                    used.add(index)
        self._fill_labeled(program, [e for i, e in enumerate(trainset) if i not in used])
        return program

    def _prepare_teacher(self, student: Module, teacher: Module | None, trainset: list[Example]) -> Module:
        teacher = (teacher or student).deepcopy()
        if not any(p.demos for p in teacher.predictors()) and self.max_labeled_demos:
            teacher = LabeledFewShot(self.max_labeled_demos, self.seed).compile(teacher, trainset=trainset)
        return teacher

    def _bootstrap(self, teacher: Module, trainset: list[Example]) -> list[tuple[int, list[Call]]]:
        """Run the teacher on each example (without that example among its demos); keep passes."""
        def attempt(item: tuple[int, Example]):
            index, example = item
            return run_example(_without_demo(teacher, example), index, example, self.metric)

        recorder().progress(f"bootstrapping demos on {len(trainset)} training examples")
        teacher_id = recorder().program(teacher, "bootstrap teacher", role="teacher")
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            attempts = list(pool.map(attempt, enumerate(trainset)))
        recorder().evaluation(teacher_id, "train", attempts)
        return [(r.index, r.calls) for r in attempts if r.score >= 1.0]

    def _fill_labeled(self, program: Module, unused: list[Example]) -> None:
        rng = random.Random(self.seed)
        for predictor in program.predictors():
            room = self.max_labeled_demos - len(predictor.demos)
            if room > 0:
                predictor.demos.extend(Example(e) for e in rng.sample(unused, min(room, len(unused))))


def _without_demo(teacher: Module, example: Example) -> Module:
    own = teacher.deepcopy()
    for predictor in own.predictors():
        predictor.demos = [d for d in predictor.demos if dict(d) != dict(example)]
    return own
