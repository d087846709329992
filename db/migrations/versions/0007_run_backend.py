"""Issue 18's resolved backend: a run's config now holds the backend it requested (auto, hf,
vllm), and the worker that executes it records what that resolved to on its machine in
runs.backend.

Before it, the config held the backend resolved at launch, which is what ran: it is copied
into the new column, read in Python so that SQLite and PostgreSQL take the same path. Rows
whose config names no backend (older still) stay NULL and read as transformers, their only
backend then.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("backend", sa.String(length=10), nullable=True))
    runs = sa.table("runs", sa.column("id", sa.Integer()), sa.column("config", sa.JSON()),
                    sa.column("backend", sa.String(length=10)))
    bind = op.get_bind()
    resolved = [{"run_id": run_id, "resolved": config["backend"]}
                for run_id, config in bind.execute(sa.select(runs.c.id, runs.c.config))
                if isinstance(config, dict) and config.get("backend") in ("hf", "vllm")]
    if resolved:
        bind.execute(runs.update().where(runs.c.id == sa.bindparam("run_id")).values(backend=sa.bindparam("resolved")),
                     resolved)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column("backend")
