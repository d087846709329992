"""Parallel evaluation that scores every example and keeps its LM-call trace.

One thread per example lets programs stay plain Python while the LM's batcher turns their
concurrent calls into batched generates. A parse failure scores 0 with the raw completion
kept in the trace; any other exception is a bug and propagates.
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
    score: float  # mean example score, 0..1
    results: list[ExampleResult]


def evaluate(program: Module, examples: list[Example], metric: Metric, *, split: str,
             program_id: int | None = None, threads: int = 16,
             details: Callable[[Example, Prediction], dict[str, float]] | None = None) -> EvaluationResult:
    """Score `program` on `examples`, recording results one chunk of `threads` examples at a time."""
    results: list[ExampleResult] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(examples), threads):
            recorder().progress(f"{split}: {start}/{len(examples)} examples", Count("examples", start, len(examples)))
            chunk = list(enumerate(examples[start:start + threads], start))
            done = list(pool.map(lambda item: run_example(program, item[0], item[1], metric, details), chunk))
            recorder().evaluation(program_id, split, done)
            results.extend(done)
    score = sum(r.score for r in results) / len(results) if results else 0.0
    return EvaluationResult(score, results)


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
