"""Execute one run: its steps in order, each committed with its program and adapter.

Step 0 scores the unoptimized program; steps 1.. are the strategy's p and w steps, walked from
BetterTogether.steps(), the library's own loop. The run's result is its last step's program (the
paper's rule); every step keeps its validation score, so the best on validation is on record. A step
found finished in the database is restored instead of recomputed, so a run whose worker
died resumes at its first unfinished step; a leftover unfinished step is deleted (with its
rows) and redone, so nothing is duplicated. Every write goes through the run's lease, so a
worker that lost the run (bt_core/serve/lease.py) stops at its next write.
"""

from __future__ import annotations

import os
import traceback
from functools import lru_cache
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bt_core.evaluate import evaluate
from bt_core.lm.base import LM
from bt_core.modules import Module
from bt_core.optimizers import BetterTogether, BootstrapFewShotWithRandomSearch, BootstrapFinetune
from bt_core.optimizers.better_together import Optimizer
from bt_core.recording import RunCancelled, recording
from bt_core.serve.config import RunConfig
from bt_core.serve.export import artifacts_dir
from bt_core.serve.lease import Lease, LeaseLost
from bt_core.serve.profile import matmul_gflops, peak_memory_mb, reset_peak_memory
from bt_core.serve.recording_db import RunRecorder
from bt_core.tasks import Splits, Task, get_task
from db.models import Run, RunStatus, Step, StepStatus, utcnow
from db.session import data_dir


@lru_cache(maxsize=2)
def load_lm(model: str, backend: str, max_batch_size: int, lora_rank: int) -> LM:
    """One LM per model and backend per process: weights load once and every run shares the call cache."""
    from bt_core.lm.backends import build_lm
    from bt_core.lm.cache import LMCache
    from bt_core.lm.models import resolve_model

    cache = LMCache(os.environ.get("BT_LM_CACHE") or data_dir() / "lm_cache.sqlite")
    return build_lm(backend, resolve_model(model), cache, max_batch_size, lora_rank)


def attempt_dir(lease: Lease) -> Path:
    """Each attempt writes its adapters in its own folder: a worker that lost the run can never
    tear the adapter of the one that took it over."""
    return artifacts_dir(lease.run_id) / f"attempt-{lease.attempt}"


def run_to_end(lease: Lease) -> RunStatus:
    """Execute a claimed run and record how it ended; never raises for a run's own failure, only
    LeaseLost when another worker holds the run now."""
    try:
        execute_run(lease)
        status, error = RunStatus.done, None
    except LeaseLost:
        raise
    except RunCancelled:
        status, error = RunStatus.cancelled, None
    except Exception as exc:  # the run failed; its finished steps stay
        status, error = RunStatus.failed, f"{type(exc).__name__}: {exc}"
    values = {"status": status, "error": error, "finished_at": utcnow(), "cancel_requested": False,
              "message": None}
    if status == RunStatus.done:
        values["progress"] = 1.0
    lease.write(lambda session: session.execute(update(Run).where(Run.id == lease.run_id).values(**values)),
                what="run end")
    return status


def execute_run(lease: Lease) -> None:
    with lease.sessions() as session:
        run = session.get(Run, lease.run_id)
        config, recorded = RunConfig.from_stored(run.config), run.backend
    task = get_task(config.task)
    backend = _resolve_backend(lease, recorded or config.backend, config.model, task)
    sizes = config.sizes
    splits = task.load(sizes.train, sizes.val, sizes.test, config.seed)
    lm = load_lm(config.model, backend, config.threads, config.lora.rank)
    _record_machine(lease, lm)
    program = task.program()
    program.set_lm(lm)
    optimizer = BetterTogether(task.metric, build_optimizers(config, task, attempt_dir(lease)),
                               config.strategy, config.seed, threads=config.threads)
    steps = list(optimizer.steps(splits.train, splits.val))
    for step in steps:
        finished = _finished_step(lease, step.index)
        if finished is not None:
            program = _restore(program, finished, lm)
            continue
        step_id = _start_step(lease, step.index, step.kind, step.label, len(steps))
        recorder = RunRecorder(lease, step_id, step.label)
        reset_peak_memory()
        try:
            with recording(recorder):
                program = step.apply(program)
                scores = score_step(program, recorder, task, splits, config, last=step is steps[-1],
                                    known_val=step.known_val_score(splits.val))
        except LeaseLost:
            raise
        except BaseException as exc:
            _fail_step(lease, step_id, exc)
            raise
        _finish_step(lease, step_id, program, scores)


def _resolve_backend(lease: Lease, requested: str, model: str, task: Task) -> str:
    """Resolve the backend here, on the machine that executes the run (only it knows whether it has
    CUDA and a vLLM that serves the model), and record what it resolved to. A resumed run asks for
    the backend it started on, so its steps never mix backends. ValueError when this machine
    cannot meet the request: the run fails with that line."""
    from bt_core.lm.backends import resolve_backend
    from bt_core.lm.models import resolve_model

    backend = resolve_backend(requested, resolve_model(model), task.prefill_bound)
    lease.write(lambda session: session.execute(update(Run).where(Run.id == lease.run_id).values(backend=backend)),
                what="run backend")
    return backend


def _record_machine(lease: Lease, lm: LM) -> None:
    """What the run profile reads its steps' FLOP rates against: the model's size and the matrix-
    product rate this process reaches on its share of the cores, measured now (half a second)."""
    values = {"model_params": lm.parameter_count(), "matmul_gflops": matmul_gflops(0.25, lm.dtype)}
    lease.write(lambda session: session.execute(update(Run).where(Run.id == lease.run_id).values(**values)),
                what="run profile")


def build_optimizers(config: RunConfig, task: Task, out_dir: Path) -> dict[str, Optimizer]:
    return {
        "p": BootstrapFewShotWithRandomSearch(
            task.metric, num_candidates=config.num_candidates, max_bootstrapped_demos=config.max_bootstrapped_demos,
            max_labeled_demos=config.max_labeled_demos, seed=config.seed, max_train=config.sizes.p_train,
            max_val=config.sizes.p_val, threads=config.threads),
        "w": BootstrapFinetune(task.metric, out_dir, lora=config.lora,
                               max_labeled_demos=config.max_labeled_demos, threads=config.threads),
    }


def score_step(program: Module, recorder: RunRecorder, task: Task, splits: Splits, config: RunConfig, *,
               last: bool, known_val: float | None) -> tuple[float, float | None]:
    """Validation (`known_val` when the step's optimizer scored its result on the whole set) and test scores."""
    program_id = recorder.program(program, "step result", role="result")
    recorder.mark_chosen(program_id)
    recorder.progress("scoring the step's result")  # not the optimizer's last message, which is over
    val = known_val
    if val is None:
        result = evaluate(program, splits.val, task.metric, split="val", program_id=program_id,
                          threads=config.threads, details=task.details)
        recorder.program_score(program_id, result)
        val = result.score
    test = None
    if config.eval_test_each_step or last:
        test = evaluate(program, splits.test, task.metric, split="test", program_id=program_id,
                        threads=config.threads, details=task.details).score
    return val, test


def _finished_step(lease: Lease, index: int) -> Step | None:
    with lease.sessions() as session:
        return session.scalar(select(Step).where(Step.run_id == lease.run_id, Step.index == index,
                                                 Step.status == StepStatus.done))


def _restore(program: Module, step: Step, lm: LM) -> Module:
    program = program.deepcopy().load_state(step.program_state)
    program.set_lm(lm.with_adapter(step.adapter_path))
    return program


def _start_step(lease: Lease, index: int, kind: str, label: str, total: int) -> int:
    """A leftover unfinished step of this index (from an attempt that died) goes, with its rows."""
    def start(session: Session) -> int:
        session.execute(delete(Step).where(Step.run_id == lease.run_id, Step.index == index,
                                           Step.status != StepStatus.done))
        step = Step(run_id=lease.run_id, index=index, kind=kind, label=label)
        session.add(step)
        session.execute(update(Run).where(Run.id == lease.run_id).values(
            current_step=f"{index}/{total - 1} {label}", progress=index / total, message=f"{label}: starting"))
        session.flush()
        return step.id
    return lease.write(start, what="step start")


def _finish_step(lease: Lease, step_id: int, program: Module, scores: tuple[float, float | None]) -> None:
    lm = program.bound_lm()
    val, test = scores

    def finish(session: Session) -> None:
        session.execute(update(Step).where(Step.id == step_id).values(
            status=StepStatus.done, program_state=program.dump_state(),
            adapter_path=lm.adapter_path if lm else None, val_score=val, test_score=test,
            finished_at=utcnow(), peak_rss_mb=peak_memory_mb()))
        session.execute(update(Run).where(Run.id == lease.run_id).values(val_score=val, test_score=test))
    lease.write(finish, what="step end")


def _fail_step(lease: Lease, step_id: int, exc: BaseException) -> None:
    error = "cancelled" if isinstance(exc, RunCancelled) else "".join(
        traceback.format_exception_only(type(exc), exc)).strip()
    try:
        lease.write(lambda session: session.execute(update(Step).where(Step.id == step_id).values(
            status=StepStatus.failed, error=error, finished_at=utcnow())), what="step failure")
    except LeaseLost:
        pass  # the run is someone else's now: its step rows are theirs to redo

