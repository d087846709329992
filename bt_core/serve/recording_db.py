"""RunRecorder: the Recorder that writes one run step's facts to the database.

Evaluation results arrive a chunk at a time and are written in one transaction each, with
bulk inserts, so recording costs a few milliseconds per chunk against seconds of generation.
Every write goes through the run's lease (bt_core/serve/lease.py), so a worker that lost its run
writes nothing more. The recorder is also where cancellation is noticed: every progress
report reads the flag.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from bt_core.recording import Count, Recorder, RunCancelled, progress_listener
from bt_core.serve.lease import Lease
from db.models import ExampleScore, Program, Run, Trace, Training

if TYPE_CHECKING:
    from bt_core.evaluate import EvaluationResult, ExampleResult
    from bt_core.lm.base import LoraConfig, TrainingLog
    from bt_core.modules import Call, Module


def state_key(program: Module) -> str:
    """Identity of a program's prompts and LM, to avoid storing the same program twice."""
    lm = program.bound_lm()
    return json.dumps([program.dump_state(), lm.adapter_path if lm else None], sort_keys=True, default=str)


class RunRecorder(Recorder):
    def __init__(self, lease: Lease, step_id: int, step_label: str) -> None:
        self.lease, self.run_id, self.step_id, self.step_label = lease, lease.run_id, step_id, step_label
        self.programs: dict[str, int] = {}  # state_key -> program id, within this step
        self._full_scores: dict[int | None, int] = {}  # program id -> validation examples it was scored on in full
        self._last_progress = 0.0

    def program(self, program: Module, label: str, role: str = "candidate") -> int:
        key = state_key(program)
        if key in self.programs and role != "teacher":
            return self.programs[key]

        def add(session: Session) -> int:
            row = Program(run_id=self.run_id, step_id=self.step_id, label=label, role=role,
                          state=program.dump_state())
            session.add(row)
            session.flush()
            return row.id
        program_id = self.lease.write(add, what="program")
        if role != "teacher":
            self.programs[key] = program_id
        return program_id

    def program_score(self, program_id: int | None, result: EvaluationResult) -> None:
        """A stopped evaluation stores no score, only how far it got and its ceiling; it never
        replaces the full score of the same program met as an earlier candidate."""
        if not result.complete and self._full_scores.get(program_id) == result.total:
            return
        values = {"val_score": result.score if result.complete else None, "val_scored": len(result.results),
                  "val_size": result.total, "val_ceiling": None if result.complete else result.ceiling}
        self.lease.write(lambda session: session.execute(
            update(Program).where(Program.id == program_id).values(**values)), what="program score")
        if result.complete:
            self._full_scores[program_id] = result.total

    def mark_chosen(self, program_id: int) -> None:
        self.lease.write(lambda session: session.execute(
            update(Program).where(Program.id == program_id).values(chosen=True)), what="chosen program")

    def evaluation(self, program_id: int | None, split: str, results: list[ExampleResult]) -> None:
        if program_id is None or not results:
            return
        scores, traces = [], []
        for r in results:
            scores.append({"run_id": self.run_id, "step_id": self.step_id, "program_id": program_id,
                           "split": split, "example_index": r.index, "score": r.score,
                           "example": dict(r.example), "prediction": dict(r.prediction) if r.prediction else None,
                           "error": r.error, "details": r.details})
            for position, call in enumerate(r.calls):
                traces.append(self._trace_row(program_id, split, r.index, position, call))

        def insert_rows(session: Session) -> None:
            session.execute(insert(ExampleScore), scores)
            if traces:
                session.execute(insert(Trace), traces)
        self.lease.write(insert_rows, what="scores and traces")

    def _trace_row(self, program_id: int, split: str, index: int, position: int, call: Call) -> dict:
        return {"run_id": self.run_id, "step_id": self.step_id, "program_id": program_id, "split": split,
                "example_index": index, "position": position, "module": call.module,
                "messages": call.messages, "completion": call.completion.text, "parsed": call.outputs,
                "parse_error": call.parse_error, "prompt_tokens": call.completion.prompt_tokens,
                "completion_tokens": call.completion.completion_tokens,
                "latency_ms": call.completion.latency_s * 1000, "cache_hit": call.completion.cached,
                "computed_prompt_tokens": call.completion.computed_prompt_tokens}

    def training_loss(self, step: int, loss: float) -> None:
        self.progress(f"LoRA step {step}, loss {loss:.4f}")

    def training(self, log: TrainingLog, config: LoraConfig) -> None:
        self.lease.write(lambda session: session.add(Training(
            run_id=self.run_id, step_id=self.step_id, examples=log.examples, hyperparams=asdict(config),
            losses=[list(x) for x in log.losses], seconds=log.seconds, adapter_path=log.adapter_path,
            shortened=log.shortened, tokens_cut=log.tokens_cut)),
            what="training")

    def training_skipped(self, reason: str, config: LoraConfig) -> None:
        self.lease.write(lambda session: session.add(Training(
            run_id=self.run_id, step_id=self.step_id, examples=0, hyperparams=asdict(config), error=reason)),
            what="skipped training")

    def progress(self, message: str, count: Count | None = None) -> None:
        """Write the message at most twice a second; raise RunCancelled when asked to stop, and
        LeaseLost at once (throttled or not) when the run is no longer this worker's. A foreground
        run's listener hears every report, after the lease check."""
        self.lease.check()
        if (listener := progress_listener()) is not None:
            listener(self.step_label, message, count)
        now = time.monotonic()
        if now - self._last_progress < 0.5:
            return
        self._last_progress = now

        def report(session: Session) -> bool:
            session.execute(update(Run).where(Run.id == self.run_id).values(message=f"{self.step_label}: {message}"))
            return session.scalar(select(Run.cancel_requested).where(Run.id == self.run_id))
        if self.lease.write(report, what="progress"):
            raise RunCancelled(f"run {self.run_id} cancelled by the user")
