"""Read queries for the dashboard: what each page shows, in one or two indexed SELECTs.

Pages get plain dicts and DataFrames, never ORM objects, so a page cannot lazy-load a
relationship by accident. Lists are paginated and select only the columns they show; JSON
blobs (messages, program states) are read only for the rows a page displays.
"""

from __future__ import annotations

import enum
from typing import Any, Iterable

import pandas as pd
from sqlalchemy import Select, String, case, cast, exists, func, or_, select

from db.models import ExampleScore, Experiment, Program, Run, RunStatus, Step, StepStatus, Trace, Training, utcnow
from db.session import Sessions

RUN_COLUMNS = (Run.id, Run.experiment_id, Run.task, Run.model, Run.strategy, Run.seed, Run.budget,
               Run.status, Run.progress, Run.current_step, Run.message, Run.val_score, Run.test_score,
               Run.worker, Run.created_at, Run.started_at, Run.finished_at)


def _frame(sessions: Sessions, stmt: Select) -> pd.DataFrame:
    with sessions() as session:
        result = session.execute(stmt)
        return pd.DataFrame([tuple(map(_plain, row)) for row in result], columns=list(result.keys()))


def _rows(sessions: Sessions, stmt: Select) -> list[dict[str, Any]]:
    with sessions() as session:
        return [{k: _plain(v) for k, v in row.items()} for row in session.execute(stmt).mappings()]


def _plain(value: Any) -> Any:
    """Status enums as their strings, so pages compare against "done", not RunStatus.done."""
    return value.value if isinstance(value, enum.Enum) else value


def experiments(sessions: Sessions, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first, with their run counts."""
    stmt = (select(Experiment.id, Experiment.name, Experiment.created_at, func.count(Run.id).label("runs"))
            .outerjoin(Run).group_by(Experiment.id).order_by(Experiment.id.desc()).limit(limit))
    return _rows(sessions, stmt)


def status_counts(sessions: Sessions) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(select(Run.status, func.count()).group_by(Run.status)).all()
    return {_plain(status): count for status, count in rows}


def _run_filter(stmt: Select, experiment_id: int | None, statuses: Iterable[str] | None) -> Select:
    if experiment_id is not None:
        stmt = stmt.where(Run.experiment_id == experiment_id)
    if statuses:
        stmt = stmt.where(Run.status.in_([RunStatus(s) for s in statuses]))
    return stmt


def runs_page(sessions: Sessions, experiment_id: int | None = None, statuses: Iterable[str] | None = None,
              limit: int = 50, offset: int = 0) -> pd.DataFrame:
    """Newest runs first, with `elapsed_s` (running runs count up to now)."""
    stmt = _run_filter(select(*RUN_COLUMNS), experiment_id, statuses)
    frame = _frame(sessions, stmt.order_by(Run.id.desc()).limit(limit).offset(offset))
    return _with_elapsed(frame)


def count_runs(sessions: Sessions, experiment_id: int | None = None, statuses: Iterable[str] | None = None) -> int:
    with sessions() as session:
        return session.scalar(_run_filter(select(func.count(Run.id)), experiment_id, statuses)) or 0


def _with_elapsed(frame: pd.DataFrame) -> pd.DataFrame:
    end = _timestamps(frame["finished_at"]).fillna(pd.Timestamp(utcnow()))
    frame["elapsed_s"] = (end - _timestamps(frame["started_at"])).dt.total_seconds()
    return frame


def _seconds(frame: pd.DataFrame) -> pd.Series:
    """A step's duration from its started_at and finished_at (NaN while it runs)."""
    return (_timestamps(frame["finished_at"]) - _timestamps(frame["started_at"])).dt.total_seconds()


def _timestamps(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column).astype("datetime64[us]")


def run_info(sessions: Sessions, run_id: int) -> dict[str, Any] | None:
    stmt = select(*RUN_COLUMNS, Run.config, Run.backend, Run.error, Run.cancel_requested,
                  Experiment.name.label("experiment")).join(Experiment).where(Run.id == run_id)
    rows = _rows(sessions, stmt)
    if not rows:
        return None
    info = _with_elapsed(pd.DataFrame([rows[0]])).iloc[0].to_dict()
    info["config"] = rows[0]["config"]  # keep the dict out of pandas' hands
    return info


def steps(sessions: Sessions, run_id: int) -> pd.DataFrame:
    stmt = (select(Step.id, Step.index, Step.kind, Step.label, Step.status, Step.val_score, Step.test_score,
                   Step.started_at, Step.finished_at, Step.adapter_path, Step.error)
            .where(Step.run_id == run_id).order_by(Step.index))
    frame = _frame(sessions, stmt)
    frame["seconds"] = _seconds(frame)
    return frame


def step_profile(sessions: Sessions, run_id: int) -> pd.DataFrame:
    """Per step, what it cost: seconds, LM calls and cache hits, prompt tokens sent and actually
    computed (fewer with a reused prefix; none for a hit), completion tokens, LoRA training
    seconds, the process's peak memory, and the model's FLOP rate (2 x parameters x tokens
    computed / seconds not spent training; a hit's completion computed nothing) against the
    matrix-product ceiling its run measured."""
    computed = func.coalesce(Trace.computed_prompt_tokens, case((Trace.cache_hit, 0), else_=Trace.prompt_tokens))
    calls = (select(Trace.step_id, func.count().label("calls"),
                    func.sum(case((Trace.cache_hit, 1), else_=0)).label("cache_hits"),
                    func.sum(Trace.prompt_tokens).label("prompt_sent"), func.sum(computed).label("prompt_computed"),
                    func.sum(Trace.completion_tokens).label("completion_tokens"),
                    func.sum(case((Trace.cache_hit, 0), else_=Trace.completion_tokens)).label("completion_generated"))
             .where(Trace.run_id == run_id).group_by(Trace.step_id).subquery())
    training = (select(Training.step_id, func.sum(Training.seconds).label("training_s"))
                .where(Training.run_id == run_id).group_by(Training.step_id).subquery())
    stmt = (select(Step.index, Step.label, Step.started_at, Step.finished_at, Step.peak_rss_mb,
                   *[func.coalesce(c, 0).label(c.name) for c in (calls.c.calls, calls.c.cache_hits, calls.c.prompt_sent,
                                                                  calls.c.prompt_computed, calls.c.completion_tokens,
                                                                  calls.c.completion_generated,
                                                                  training.c.training_s)],
                   Run.model_params, Run.matmul_gflops, Run.cpu_threads)
            .join(Run, Run.id == Step.run_id).outerjoin(calls, calls.c.step_id == Step.id)
            .outerjoin(training, training.c.step_id == Step.id)
            .where(Step.run_id == run_id).order_by(Step.index))
    frame = _frame(sessions, stmt)
    frame["seconds"] = _seconds(frame)
    flops = 2 * frame["model_params"].astype(float) * (frame["prompt_computed"] + frame["completion_generated"])
    inference_s = (frame["seconds"] - frame["training_s"]).where(lambda s: s > 0)
    frame["gflops"] = flops / inference_s / 1e9
    frame["of_ceiling"] = frame["gflops"] / frame["matmul_gflops"].astype(float)
    return frame.drop(columns=["started_at", "finished_at"])


def final_step(sessions: Sessions, run_id: int) -> dict[str, Any] | None:
    """The last finished step: its program state and adapter are what the run exports."""
    stmt = (select(Step.index, Step.label, Step.program_state, Step.adapter_path, Step.val_score, Step.test_score)
            .where(Step.run_id == run_id, Step.status == StepStatus.done, Step.program_state.is_not(None))
            .order_by(Step.index.desc()).limit(1))
    rows = _rows(sessions, stmt)
    return rows[0] if rows else None


def best_on_validation(sessions: Sessions, run_id: int) -> dict[str, Any] | None:
    """The finished step that scored best on validation (the first of equals), for the record: a
    strategy's result is its final step's program, as in the paper's Table 1."""
    stmt = (select(Step.index, Step.kind, Step.label, Step.val_score)
            .where(Step.run_id == run_id, Step.status == StepStatus.done, Step.val_score.is_not(None))
            .order_by(Step.val_score.desc(), Step.index).limit(1))
    rows = _rows(sessions, stmt)
    return rows[0] if rows else None


def trainings(sessions: Sessions, run_id: int) -> list[dict[str, Any]]:
    stmt = (select(Training.id, Training.examples, Training.hyperparams, Training.losses, Training.seconds,
                   Training.adapter_path, Training.error, Step.index.label("step_index"),
                   Step.label.label("step_label"))
            .join(Step, Training.step_id == Step.id).where(Training.run_id == run_id).order_by(Training.id))
    return _rows(sessions, stmt)


def programs(sessions: Sessions, run_id: int, with_state: bool = False) -> pd.DataFrame:
    """Every stored program of a run in step order: candidates, teachers and step results."""
    columns = [Program.id, Program.step_id, Step.index.label("step_index"), Step.label.label("step_label"),
               Program.label, Program.role, Program.val_score, Program.val_scored, Program.val_size,
               Program.val_ceiling, Program.chosen]
    stmt = (select(*columns, *([Program.state] if with_state else []))
            .join(Step, Program.step_id == Step.id).where(Program.run_id == run_id)
            .order_by(Step.index, Program.id))
    return _frame(sessions, stmt)


def compare_runs(sessions: Sessions, experiment_id: int | None = None,
                 run_ids: list[int] | None = None) -> pd.DataFrame:
    """With each run's stored config and resolved backend: they decide which runs compare."""
    stmt = select(Run.id, Run.task, Run.model, Run.strategy, Run.seed, Run.budget, Run.status,
                  Run.val_score, Run.test_score, Run.config, Run.backend)
    if run_ids is not None:
        stmt = stmt.where(Run.id.in_(run_ids))
    stmt = _run_filter(stmt, experiment_id, None)
    return _frame(sessions, stmt.order_by(Run.id))


def step_scores(sessions: Sessions, run_ids: list[int]) -> pd.DataFrame:
    """Finished steps' scores of these runs, for per-step curves."""
    stmt = (select(Run.id.label("run_id"), Run.task, Run.model, Run.strategy, Run.seed, Step.index,
                   Step.label, Step.val_score, Step.test_score)
            .join(Step, Step.run_id == Run.id)
            .where(Run.id.in_(run_ids), Step.status == StepStatus.done).order_by(Run.id, Step.index))
    return _frame(sessions, stmt)


def test_example_scores(sessions: Sessions, run_ids: list[int]) -> pd.DataFrame:
    """Per-example test scores of each run's step 0 (the unoptimized program, vanilla's stand-in)
    and its last finished step (the run's result, as the paper's Table 1 reports it):
    run_id, step_index, final, example_index, score. Deltas pair them by seed and example.
    A step scores one program on test, its result (for a p step, often a candidate program)."""
    last = (select(Step.run_id, func.max(Step.index).label("index"))
            .where(Step.run_id.in_(run_ids), Step.status == StepStatus.done).group_by(Step.run_id).subquery())
    stmt = (select(ExampleScore.run_id, Step.index.label("step_index"), (Step.index == last.c.index).label("final"),
                   ExampleScore.example_index, ExampleScore.score)
            .join(Step, ExampleScore.step_id == Step.id).join(last, last.c.run_id == Step.run_id)
            .where(ExampleScore.split == "test", Step.status == StepStatus.done,
                   or_(Step.index == 0, Step.index == last.c.index))
            .order_by(ExampleScore.run_id, Step.index, ExampleScore.example_index))
    return _frame(sessions, stmt)


def untrained_w_steps(sessions: Sessions, run_ids: list[int]) -> pd.DataFrame:
    """w steps that fine-tuned nothing (no training trace passed the metric, so the weights
    stayed as they were): run_id, step_index, label, reason. Compare marks their runs."""
    stmt = (select(Training.run_id, Step.index.label("step_index"), Step.label, Training.error.label("reason"))
            .join(Step, Training.step_id == Step.id)
            .where(Training.run_id.in_(run_ids), Training.examples == 0).order_by(Training.run_id, Step.index))
    return _frame(sessions, stmt)


def seconds_per_call(sessions: Sessions, model: str, last: int = 20) -> float | None:
    """Wall seconds per LM call over this model's recent finished runs; None without history."""
    recent = (select(Run.id, Run.started_at, Run.finished_at)
              .where(Run.model == model, Run.status == RunStatus.done,
                     Run.started_at.is_not(None), Run.finished_at.is_not(None))
              .order_by(Run.id.desc()).limit(last))
    with sessions() as session:
        runs = session.execute(recent).all()
        if not runs:
            return None
        calls = session.scalar(select(func.count(Trace.id)).where(Trace.run_id.in_([r.id for r in runs])))
    seconds = sum((r.finished_at - r.started_at).total_seconds() for r in runs)
    return seconds / calls if calls else None


def evaluated_steps(sessions: Sessions, run_id: int, split: str) -> list[dict[str, Any]]:
    """Steps of a run that scored examples on `split`, each with the program to show.

    A step can score several programs on a split (a p step's candidates on val); the one
    shown is the step's chosen result, else the last one stored.
    """
    scored = exists().where(ExampleScore.program_id == Program.id, ExampleScore.split == split)
    stmt = (select(Step.id.label("step_id"), Step.index, Step.label, Program.id.label("program_id"),
                   Program.label.label("program_label"), Program.role, Program.chosen)
            .join(Step, Program.step_id == Step.id).where(Program.run_id == run_id, scored)
            .order_by(Step.index, Program.id))
    best: dict[int, dict[str, Any]] = {}
    for row in _rows(sessions, stmt):
        current = best.get(row["step_id"])
        if current is None or _rank(row) >= _rank(current):
            best[row["step_id"]] = row
    return list(best.values())


def _rank(program: dict[str, Any]) -> int:
    return 2 * program["chosen"] + (program["role"] == "result")


def detail_means(sessions: Sessions, run_id: int, split: str) -> pd.DataFrame:
    """Per step, the mean of each secondary measure (F1, retrieval recall per hop...) on `split`,
    for the program evaluated_steps shows; empty for tasks without such measures."""
    step_of = {s["program_id"]: s["index"] for s in evaluated_steps(sessions, run_id, split)}
    stmt = select(ExampleScore.program_id, ExampleScore.details).where(
        ExampleScore.program_id.in_(step_of), ExampleScore.split == split)
    with sessions() as session:
        rows = [{"index": step_of[program_id], **(details or {})} for program_id, details in session.execute(stmt)]
    frame = pd.DataFrame(rows)
    return frame.groupby("index").mean() if len(frame.columns) > 1 else pd.DataFrame()


def example_scores(sessions: Sessions, program_id: int, split: str) -> pd.DataFrame:
    stmt = (select(ExampleScore.example_index, ExampleScore.score, ExampleScore.error)
            .where(ExampleScore.program_id == program_id, ExampleScore.split == split)
            .order_by(ExampleScore.example_index))
    return _frame(sessions, stmt)


def search_examples(sessions: Sessions, program_ids: list[int], split: str, text: str) -> set[int]:
    """Example indexes whose inputs, labels or predictions contain `text` (case-insensitive)."""
    pattern = f"%{text}%"
    stmt = (select(ExampleScore.example_index).distinct()
            .where(ExampleScore.program_id.in_(program_ids), ExampleScore.split == split,
                   or_(cast(ExampleScore.example, String).ilike(pattern),
                       cast(ExampleScore.prediction, String).ilike(pattern))))
    with sessions() as session:
        return set(session.scalars(stmt))


def example_result(sessions: Sessions, program_id: int, split: str, example_index: int) -> dict[str, Any] | None:
    stmt = (select(ExampleScore.example, ExampleScore.prediction, ExampleScore.score, ExampleScore.error,
                   ExampleScore.details)
            .where(ExampleScore.program_id == program_id, ExampleScore.split == split,
                   ExampleScore.example_index == example_index).limit(1))
    rows = _rows(sessions, stmt)
    return rows[0] if rows else None


def traces(sessions: Sessions, program_id: int, split: str, example_index: int) -> list[dict[str, Any]]:
    """The LM calls of one example under one program, in call order."""
    stmt = (select(Trace.position, Trace.module, Trace.messages, Trace.completion, Trace.parsed,
                   Trace.parse_error, Trace.prompt_tokens, Trace.completion_tokens, Trace.latency_ms,
                   Trace.cache_hit)
            .where(Trace.program_id == program_id, Trace.split == split, Trace.example_index == example_index)
            .order_by(Trace.position))
    return _rows(sessions, stmt)
