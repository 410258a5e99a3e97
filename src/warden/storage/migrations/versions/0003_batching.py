"""per-version dynamic batching settings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_batch_size", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_queue_delay_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("max_queue_delay_ms")
        batch_op.drop_column("max_batch_size")
