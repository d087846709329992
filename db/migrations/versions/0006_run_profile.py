"""Issue 17's run profile: what each step cost. A trace stores the prompt tokens its call actually
prefilled (computed_prompt_tokens: fewer than those sent when a shared prefix was reused, 0 for a
cache hit); a step, the peak memory of its process while it ran (peak_rss_mb); a run, its model's
parameter count and the fp32 matrix-product rate its process reached on its core share
(matmul_gflops), the ceiling its steps' FLOP rates are read against.

Rows stored before it read NULL: no profile was taken.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("traces", sa.Column("computed_prompt_tokens", sa.Integer(), nullable=True))
    op.add_column("steps", sa.Column("peak_rss_mb", sa.Float(), nullable=True))
    op.add_column("runs", sa.Column("model_params", sa.BigInteger(), nullable=True))
    op.add_column("runs", sa.Column("matmul_gflops", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column("matmul_gflops")
        batch.drop_column("model_params")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("peak_rss_mb")
    with op.batch_alter_table("traces") as batch:
        batch.drop_column("computed_prompt_tokens")
