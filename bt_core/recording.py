"""Where optimizers report what they did: candidate programs, evaluations, LoRA jobs, progress.

Optimizers keep the DSPy-like `compile(student, *, trainset, valset)` signature and report to
the recorder of the current context. Outside a run it is a Recorder that keeps nothing, so
the library works standalone; the runner installs one that writes to the database.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from bt_core.evaluate import ExampleResult
    from bt_core.lm.base import TrainingLog
    from bt_core.lm.lora import LoraConfig
    from bt_core.modules import Module


class RunCancelled(Exception):
    """Raised at a safe point when the user asked to cancel the run."""


class Recorder:
    def program(self, program: Module, label: str, role: str = "candidate") -> int | None:
        """Store a program (a candidate, a teacher or a step's result); return its id."""
        return None

    def program_score(self, program_id: int | None, val_score: float, examples: int = 0) -> None:
        pass

    def evaluation(self, program_id: int | None, split: str, results: list[ExampleResult]) -> None:
        """Store a chunk of per-example results with their LM-call traces."""

    def training(self, log: TrainingLog, config: LoraConfig) -> None:
        pass

    def training_loss(self, step: int, loss: float) -> None:
        pass

    def training_skipped(self, reason: str, config: LoraConfig) -> None:
        """A w step that had no data to train on; the run goes on with the weights it had."""

    def progress(self, message: str) -> None:
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
