"""The schema before issue 15: every table of db/models.py, runs without its lease `attempt`.

Written out in full, not derived from the models, so it stays what the first databases held
when the models change.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

RUN_STATUS = sa.Enum("queued", "running", "done", "failed", "cancelled", name="runstatus", native_enum=False)
STEP_STATUS = sa.Enum("running", "done", "failed", name="stepstatus", native_enum=False)


def _fk(column: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"))
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("current_run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"))
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=50), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("strategy", sa.String(length=100), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("budget", sa.String(length=20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("status", RUN_STATUS, nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("current_step", sa.String(length=100), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("val_score", sa.Float(), nullable=True),
        sa.Column("test_score", sa.Float(), nullable=True),
        _fk("experiment_id", "experiments"),
        sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_runs_experiment_id", "runs", ["experiment_id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("status", STEP_STATUS, nullable=False),
        sa.Column("program_state", sa.JSON(), nullable=True),
        sa.Column("adapter_path", sa.Text(), nullable=True),
        sa.Column("val_score", sa.Float(), nullable=True),
        sa.Column("test_score", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        _fk("run_id", "runs"),
        sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_steps_run_index", "steps", ["run_id", "index"], unique=True)
    op.create_table(
        "programs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("adapter_path", sa.Text(), nullable=True),
        sa.Column("val_score", sa.Float(), nullable=True),
        sa.Column("chosen", sa.Boolean(), nullable=False),
        _fk("run_id", "runs"),
        _fk("step_id", "steps"),
        sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_programs_run_id", "programs", ["run_id"])
    op.create_index("ix_programs_step_id", "programs", ["step_id"])
    op.create_table(
        "trainings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("hyperparams", sa.JSON(), nullable=False),
        sa.Column("losses", sa.JSON(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("adapter_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _fk("run_id", "runs"),
        _fk("step_id", "steps"),
        sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_trainings_run_id", "trainings", ["run_id"])
    op.create_index("ix_trainings_step_id", "trainings", ["step_id"])
    op.create_table(
        "example_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=10), nullable=False),
        sa.Column("example_index", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("example", sa.JSON(), nullable=False),
        sa.Column("prediction", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        _fk("program_id", "programs"),
        _fk("run_id", "runs"),
        _fk("step_id", "steps"),
        sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_example_scores_step_id", "example_scores", ["step_id"])
    op.create_index("ix_scores_program_split", "example_scores", ["program_id", "split", "example_index"])
    op.create_index("ix_scores_run_split", "example_scores", ["run_id", "split"])
    op.create_table(
        "traces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=10), nullable=False),
        sa.Column("example_index", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("module", sa.String(length=200), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("completion", sa.Text(), nullable=False),
        sa.Column("parsed", sa.JSON(), nullable=True),
        sa.Column("parse_error", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        _fk("program_id", "programs"),
        _fk("run_id", "runs"),
        _fk("step_id", "steps"),
        sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_traces_program_split", "traces", ["program_id", "split", "example_index"])
    op.create_index("ix_traces_run_split", "traces", ["run_id", "split", "example_index"])
    op.create_index("ix_traces_step_id", "traces", ["step_id"])


def downgrade() -> None:
    for table in ("traces", "example_scores", "trainings", "programs", "steps", "runs", "workers", "experiments"):
        op.drop_table(table)
