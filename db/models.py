"""The schema: experiments hold runs; a run is a sequence of steps; every step stores its
candidate programs, per-example scores, LM-call traces and LoRA jobs.

JSON columns hold structured facts that are read whole (messages, demos, configs); anything
a page filters or sorts on is a real, indexed column.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Enum, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.limits import EXPERIMENT_NAME_MAX, MODEL_MAX, STRATEGY_COLUMN


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class RunStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class StepStatus(str, enum.Enum):
    running = "running"
    done = "done"
    failed = "failed"


class Experiment(Base):
    __tablename__ = "experiments"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(EXPERIMENT_NAME_MAX))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    grid: Mapped[dict[str, Any]] = mapped_column(default=dict)  # what the user asked for
    runs: Mapped[list[Run]] = relationship(back_populates="experiment", cascade="all, delete-orphan")


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(MODEL_MAX))
    strategy: Mapped[str] = mapped_column(String(STRATEGY_COLUMN))
    seed: Mapped[int] = mapped_column(Integer)
    budget: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # fully resolved RunConfig, the backend requested
    backend: Mapped[str | None] = mapped_column(String(10))  # what the executing worker resolved it to
    config_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[RunStatus] = mapped_column(Enum(RunStatus, native_enum=False), default=RunStatus.queued, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    current_step: Mapped[str | None] = mapped_column(String(STRATEGY_COLUMN))
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid of the claiming worker
    # The lease: every claim takes the next attempt, and a write for the run holds only while
    # the run is still running under the attempt its writer claimed (bt_core/serve/lease.py).
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cpu_threads: Mapped[int | None] = mapped_column(Integer)  # its latest attempt's threads (bt_core/serve/cores.py)
    model_params: Mapped[int | None] = mapped_column(BigInteger)  # for the steps' FLOP rates (bt_core/serve/profile.py)
    matmul_gflops: Mapped[float | None] = mapped_column(Float)  # the matrix-product ceiling its process measured
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)  # the database's clock, UTC
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    val_score: Mapped[float | None] = mapped_column(Float)  # of the final step's program
    test_score: Mapped[float | None] = mapped_column(Float)
    experiment: Mapped[Experiment] = relationship(back_populates="runs")
    steps: Mapped[list[Step]] = relationship(back_populates="run", cascade="all, delete-orphan",
                                             order_by="Step.index")


class Step(Base):
    """Step 0 evaluates the unoptimized program; steps 1.. are the strategy's p and w steps."""

    __tablename__ = "steps"
    __table_args__ = (Index("ix_steps_run_index", "run_id", "index", unique=True),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # "vanilla", "p" or "w"
    label: Mapped[str] = mapped_column(String(STRATEGY_COLUMN))  # strategy prefix, e.g. "p -> w"
    status: Mapped[StepStatus] = mapped_column(Enum(StepStatus, native_enum=False), default=StepStatus.running)
    program_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the program this step produced
    adapter_path: Mapped[str | None] = mapped_column(Text)  # the LM's LoRA adapter after this step
    val_score: Mapped[float | None] = mapped_column(Float)
    test_score: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float)  # the process's peak memory during the step
    run: Mapped[Run] = relationship(back_populates="steps")


class Program(Base):
    """A candidate program of a step (a p step has several; others have one)."""

    __tablename__ = "programs"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))  # "zero-shot", "labeled demos", "random #2"...
    role: Mapped[str] = mapped_column(String(20), default="candidate")  # candidate | teacher | result
    state: Mapped[dict[str, Any]] = mapped_column()  # per module: signature (instructions) + demos
    val_score: Mapped[float | None] = mapped_column(Float)  # on the whole valset; NULL when scoring stopped early
    val_scored: Mapped[int | None] = mapped_column(Integer)  # validation examples it was scored on
    val_size: Mapped[int | None] = mapped_column(Integer)  # of a validation set this size
    val_ceiling: Mapped[float | None] = mapped_column(Float)  # when stopped early: the most val_score could be
    chosen: Mapped[bool] = mapped_column(Boolean, default=False)


class ExampleScore(Base):
    __tablename__ = "example_scores"
    __table_args__ = (Index("ix_scores_program_split", "program_id", "split", "example_index"),
                      Index("ix_scores_run_split", "run_id", "split"))
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(10))  # train | val | test
    example_index: Mapped[int] = mapped_column(Integer)  # position in the run's split
    score: Mapped[float] = mapped_column(Float)
    example: Mapped[dict[str, Any]] = mapped_column()  # inputs and labels
    prediction: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)  # parse failure or exception
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Trace(Base):
    """One LM call."""

    __tablename__ = "traces"
    __table_args__ = (Index("ix_traces_program_split", "program_id", "split", "example_index"),
                      Index("ix_traces_run_split", "run_id", "split", "example_index"))
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(10))
    example_index: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # order of the call within the example
    module: Mapped[str] = mapped_column(String(200))  # predictor name in the program
    messages: Mapped[list[Any]] = mapped_column()
    completion: Mapped[str] = mapped_column(Text)
    parsed: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    parse_error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    cache_hit: Mapped[bool] = mapped_column(Boolean)
    computed_prompt_tokens: Mapped[int | None] = mapped_column(Integer)  # prefilled: less with a reused prefix


class Training(Base):
    """One LoRA job of a w step."""

    __tablename__ = "trainings"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    examples: Mapped[int] = mapped_column(Integer)  # SFT conversations
    shortened: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # conversations cut to max_length
    tokens_cut: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # prompt tokens they lost
    hyperparams: Mapped[dict[str, Any]] = mapped_column()
    losses: Mapped[list[Any]] = mapped_column(default=list)  # [[step, loss], ...]
    seconds: Mapped[float | None] = mapped_column(Float)
    adapter_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class Worker(Base):
    """A live worker process; the dashboard starts one when none has a fresh heartbeat."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    current_run_id: Mapped[int | None] = mapped_column(Integer)
