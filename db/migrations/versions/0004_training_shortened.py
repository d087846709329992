"""Issue 16's fine-tuning data: how many conversations of a LoRA job were shortened to fit its
max_length, and how many prompt tokens they lost.

Existing trainings were cut on the left, uncounted; they read 0.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("trainings", sa.Column("shortened", sa.Integer(), server_default="0", nullable=False))
    op.add_column("trainings", sa.Column("tokens_cut", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("trainings") as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column("tokens_cut")
        batch.drop_column("shortened")
