"""Few-shot demos: LabeledFewShot samples training examples; BootstrapFewShot keeps the
module-level inputs and outputs of the teacher's successful traces.

Bootstrapped demos are what teach a small model the output format and carry reasoning,
which labeled examples lack. When the teacher has no demos it gets labeled ones first (as in
DSPy), so that even a model that breaks the format zero-shot produces some successful traces.
The default teacher of a p step is the student without its demos, as in the DSPy the paper ran
(before its October 2024 change): a later p bootstraps afresh from the current LM. Every demo
remembers the training example it came from, and a teacher never runs an example with a demo
made from it, or an example could pass by copying its own answer. A labeled example becomes a
demo only of the predictors whose outputs it has. The teacher runs a chunk of examples at a time
and stops once every predictor has its demos, as DSPy's does.
"""

from __future__ import annotations

import random
from dataclasses import KW_ONLY, dataclass
from typing import Callable

from bt_core.adapter import informative
from bt_core.evaluate import ExampleResult, Metric, run_chunks, run_example
from bt_core.modules import SOURCE, Example, Module, demo_from, example_id
from bt_core.recording import recorder


@dataclass
class LabeledFewShot:
    k: int = 3  # demos per predictor
    seed: int = 0  # which training examples are sampled

    def compile(self, student: Module, *, trainset: list[Example], valset=None) -> Module:
        program = student.reset_copy()
        for predictor in program.predictors():
            pool = [e for e in trainset if informative(predictor.signature, e)]
            predictor.demos = [demo_from(e, e) for e in random.Random(self.seed).sample(pool, min(self.k, len(pool)))]
        return program


@dataclass
class BootstrapFewShot:
    metric: Metric
    _: KW_ONLY  # four numbers: by name
    max_bootstrapped_demos: int = 3  # demos per predictor taken from successful traces
    max_labeled_demos: int = 3  # total demos per predictor; labeled examples fill what is left
    seed: int = 0  # the teacher's labeled demos
    threads: int = 16  # examples run concurrently

    def compile(self, student: Module, *, trainset: list[Example], valset=None,
                teacher: Module | None = None) -> Module:
        successes = self._successes(student, trainset, teacher)
        program = student.reset_copy()
        used: set[int] = set()
        for name, predictor in program.named_predictors():
            for result in successes:
                if len(predictor.demos) >= self.max_bootstrapped_demos:
                    break
                call = next((c for c in result.calls if c.module == name), None)
                if call is not None:
                    predictor.demos.append(demo_from(result.example, {**call.inputs, **call.outputs}))
                    used.add(result.index)
        self._fill_labeled(program, [e for i, e in enumerate(trainset) if i not in used])
        return program

    def _successes(self, student: Module, trainset: list[Example], teacher: Module | None) -> list[ExampleResult]:
        """The teacher's passing traces in training order, run only until every predictor has its
        demos, as DSPy does: the demos are the first successes, so running on changes none."""
        if not self.max_bootstrapped_demos:
            return []
        teacher = teacher_for(student.reset_copy(), teacher, trainset, self.max_labeled_demos, self.seed)
        names = [name for name, _ in student.named_predictors()]

        def enough(results: list[ExampleResult]) -> bool:
            passed = [r for r in results if r.score >= 1.0]
            return all(sum(any(c.module == name for c in r.calls) for r in passed) >= self.max_bootstrapped_demos
                       for name in names)
        return [r for r in bootstrap_traces(teacher, trainset, self.metric, self.threads, enough) if r.score >= 1.0]

    def _fill_labeled(self, program: Module, unused: list[Example]) -> None:
        rng = random.Random(self.seed)
        for predictor in program.predictors():
            room = self.max_labeled_demos - len(predictor.demos)
            pool = [e for e in unused if informative(predictor.signature, e)]
            if room > 0:
                predictor.demos.extend(demo_from(e, e) for e in rng.sample(pool, min(room, len(pool))))


def teacher_for(student: Module, teacher: Module | None, trainset: list[Example], k: int, seed: int) -> Module:
    """The given teacher, else the student; one without demos gets k labeled ones (as DSPy does)."""
    teacher = (teacher or student).deepcopy()
    if not any(p.demos for p in teacher.predictors()) and k:
        teacher = LabeledFewShot(k, seed).compile(teacher, trainset=trainset)
    return teacher


def bootstrap_traces(teacher: Module, trainset: list[Example], metric: Metric, threads: int,
                     until: Callable[[list[ExampleResult]], bool] = lambda done: False) -> list[ExampleResult]:
    """Run the teacher on the examples in order, each without a demo made from it, and record it;
    stop before a chunk once `until(results so far)` (a w step wants every trace: no `until`)."""
    recorder().progress(f"running the teacher on {len(trainset)} training examples")
    teacher_id = recorder().program(teacher, "teacher", role="teacher")
    attempt = lambda index, example: run_example(_without_demo(teacher, example), index, example, metric,
                                                 bootstrapping=True)
    return run_chunks(attempt, trainset, "train", teacher_id, threads, until)


def _without_demo(teacher: Module, example: Example) -> Module:
    """The teacher without any demo made from `example`: no example runs with its own answer."""
    source = example_id(example)
    own = teacher.deepcopy()
    for predictor in own.predictors():
        predictor.demos = [d for d in predictor.demos if d.get(SOURCE) != source]
    return own
