"""Issue 17's early stop in random search: a candidate that can no longer beat the best stops being
scored, so a program stores how many validation examples it was scored on (val_scored), of how many
(val_size), and, when it stopped early, the most its score could have been (val_ceiling), with
val_score NULL rather than a partial mean.

Programs stored before it were scored in full, unrecorded how far; they read NULL.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("programs", sa.Column("val_scored", sa.Integer(), nullable=True))
    op.add_column("programs", sa.Column("val_size", sa.Integer(), nullable=True))
    op.add_column("programs", sa.Column("val_ceiling", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("programs") as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column("val_ceiling")
        batch.drop_column("val_size")
        batch.drop_column("val_scored")
