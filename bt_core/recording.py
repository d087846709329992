"""Where optimizers report what they did: candidate programs, evaluations, LoRA jobs, progress.

Optimizers keep the DSPy-like `compile(student, *, trainset, valset)` signature and report to
the recorder of the current context. Outside a run it is a Recorder that keeps nothing, so
the library works standalone; the runner installs one that writes to the database.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from bt_core.evaluate import EvaluationResult, ExampleResult
    from bt_core.lm.base import LoraConfig, TrainingLog
    from bt_core.modules import Module


@dataclass(frozen=True)
class Count:
    """How far a counted piece of work is, passed beside the message so that a display can draw
    a bar and an ETA without parsing the text."""

    what: str  # the unit, plural: "examples", "candidates"
    done: int
    total: int


class RunCancelled(Exception):
    """Raised at a safe point when the user asked to cancel the run."""


class Recorder:
    def program(self, program: Module, label: str, role: str = "candidate") -> int | None:
        """Store a program (a candidate, a teacher or a step's result); return its id."""
        return None

    def program_score(self, program_id: int | None, result: EvaluationResult) -> None:
        """Store a program's validation score, or, when its scoring stopped early, how far it got."""

    def evaluation(self, program_id: int | None, split: str, results: list[ExampleResult]) -> None:
        """Store a chunk of per-example results with their LM-call traces."""

    def training(self, log: TrainingLog, config: LoraConfig) -> None:
        pass

    def training_loss(self, step: int, loss: float) -> None:
        pass

    def training_skipped(self, reason: str, config: LoraConfig) -> None:
        """A w step that had no data to train on; the run goes on with the weights it had."""

    def progress(self, message: str, count: Count | None = None) -> None:
        """Report what is happening; may raise RunCancelled."""


_current: ContextVar[Recorder] = ContextVar("bt_recorder", default=Recorder())


def recorder() -> Recorder:
    return _current.get()


@contextmanager
def recording(target: Recorder) -> Iterator[Recorder]:
    token = _current.set(target)
    try:
        yield target
    finally:
        _current.reset(token)


# (step label, message, count): what a foreground run shows as it goes, every report unthrottled.
ProgressListener = Callable[[str, str, Count | None], None]
_listener: ContextVar[ProgressListener | None] = ContextVar("bt_progress_listener", default=None)


def progress_listener() -> ProgressListener | None:
    return _listener.get()


@contextmanager
def watching(listener: ProgressListener) -> Iterator[None]:
    """Send every progress report of the runs executed in this context to `listener` too."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
