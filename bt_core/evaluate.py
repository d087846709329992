"""Parallel evaluation that scores every example and keeps its LM-call trace.

One thread per example lets programs stay plain Python while the LM's batcher turns their
concurrent calls into batched generates. A parse failure scores 0 with the raw completion
kept in the trace; any other exception is a bug and propagates. The examples run a chunk at a
time, so that a caller can stop between chunks once the rest cannot change what it decides.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from bt_core.adapter import ParseError
from bt_core.modules import Call, Example, Module, Prediction, capture_trace
from bt_core.recording import Count, recorder

Metric = Callable[[Example, Prediction, Any], float]


@dataclass
class ExampleResult:
    index: int  # position in the evaluated split
    example: Example
    prediction: Prediction | None  # None when a module's completion did not parse
    score: float
    calls: list[Call]
    error: str | None = None
    details: dict[str, float] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    results: list[ExampleResult]  # the examples scored, in order
    total: int  # examples asked for; more than were scored when the evaluation stopped early

    @property
    def complete(self) -> bool:
        return len(self.results) == self.total

    @property
    def ceiling(self) -> float:
        """The most the mean over all `total` examples can be, every example not scored counted as 1."""
        return (sum(r.score for r in self.results) + self.total - len(self.results)) / self.total if self.total else 0.0

    @property
    def score(self) -> float:
        """Mean example score, 0..1; a stopped evaluation has none, so no partial mean passes for one."""
        if not self.complete:
            raise ValueError(f"scored {len(self.results)} of {self.total} examples: a ceiling, not a score")
        return self.ceiling


def evaluate(program: Module, examples: list[Example], metric: Metric, *, split: str,
             program_id: int | None = None, threads: int = 16,
             details: Callable[[Example, Prediction], dict[str, float]] | None = None,
             must_beat: float | None = None) -> EvaluationResult:
    """Score `program` on `examples`, recording results one chunk of `threads` examples at a time.

    With `must_beat` (random search's best so far) it stops before a chunk once its ceiling is no
    higher: it can no longer be chosen, and a tie keeps the earlier candidate."""
    hopeless = lambda done: must_beat is not None and EvaluationResult(done, len(examples)).ceiling <= must_beat
    attempt = lambda index, example: run_example(program, index, example, metric, details)
    return EvaluationResult(run_chunks(attempt, examples, split, program_id, threads, until=hopeless), len(examples))


def run_chunks(attempt: Callable[[int, Example], ExampleResult], examples: list[Example], split: str,
               program_id: int | None, threads: int,
               until: Callable[[list[ExampleResult]], bool] = lambda done: False) -> list[ExampleResult]:
    """Run `attempt` on the examples in order, a chunk of `threads` at a time (the LM batches a
    chunk's calls) and record each chunk; stop before a chunk once `until(results so far)`."""
    results: list[ExampleResult] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(examples), threads):
            if until(results):
                break
            recorder().progress(f"{split}: {start}/{len(examples)} examples", Count("examples", start, len(examples)))
            chunk = list(pool.map(lambda item: attempt(*item), enumerate(examples[start:start + threads], start)))
            recorder().evaluation(program_id, split, chunk)
            results.extend(chunk)
    return results


def run_example(program: Module, index: int, example: Example, metric: Metric,
                details: Callable[[Example, Prediction], dict[str, float]] | None = None,
                bootstrapping: bool = False) -> ExampleResult:
    """Run and score one example; while bootstrapping the metric gets the trace, as in DSPy, so a
    task can demand more of a trace that becomes a demo or training data than of a test answer."""
    with capture_trace() as calls:
        try:
            prediction = program(**example.inputs())
        except ParseError as exc:
            prediction, error = None, f"parse error: {exc}"
    names = {id(p): name for name, p in program.named_predictors()}
    for call in calls:
        call.module = names[id(call.predictor)]
    if prediction is None:  # a failed example scores 0, and 0 on every secondary measure too
        extra = details(example, Prediction()) if details else {}
        return ExampleResult(index, example, None, 0.0, list(calls), error, extra)
    score = float(metric(example, prediction, list(calls) if bootstrapping else None))
    extra = details(example, prediction) if details else {}
    return ExampleResult(index, example, prediction, score, list(calls), None, extra)
