"""Issue 15's lease: runs.attempt, the claim count that fences a worker which lost its run.

Existing runs start at attempt 0, as a fresh claim would.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("attempt", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column("attempt")
