"""The check that a run whose worker died resumed where it stopped, shared by the local-worker
and the Ray-executor tests: finished steps kept as they were, the w step redone, no trace twice."""

from __future__ import annotations

from sqlalchemy import func, select

from db.models import Step, StepStatus, Trace


def step_rows(sessions, run_id):
    with sessions() as session:
        return [(s.index, s.id, s.status, s.started_at, s.finished_at) for s in
                session.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.index))]


def duplicated_traces(sessions, run_id):
    with sessions() as session:
        return session.execute(
            select(Trace.program_id, Trace.split, Trace.example_index, Trace.position, func.count())
            .where(Trace.run_id == run_id)
            .group_by(Trace.program_id, Trace.split, Trace.example_index, Trace.position)
            .having(func.count() > 1)).all()


def assert_resumed_at_the_w_step(sessions, run_id, before) -> None:
    """`before`: step_rows taken when the worker was killed during step 2 (the w step)."""
    after = step_rows(sessions, run_id)
    assert after[:2] == before[:2]  # finished steps kept, not recomputed
    assert after[2][2] == StepStatus.done and after[2][3] > before[2][3]  # the w step was redone
    assert duplicated_traces(sessions, run_id) == []
