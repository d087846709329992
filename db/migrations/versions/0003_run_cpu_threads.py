"""Issue 19's core budget: runs.cpu_threads, the threads the model ran on in the run's latest attempt.

NULL for runs claimed before it, and for runs claimed without a share (tests claiming directly).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("cpu_threads", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cpu_threads")
