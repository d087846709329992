"""Issue 18: programs.adapter_path goes. It was written for every stored program and read by
nothing: a step's adapter is steps.adapter_path, which export, resume and the pages read.

Downgrading adds the column back empty.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("programs") as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column("adapter_path")


def downgrade() -> None:
    op.add_column("programs", sa.Column("adapter_path", sa.Text(), nullable=True))
