"""tenant quotas and daily usage

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_QUOTA_COLUMNS = (
    ("rps", sa.Float()),
    ("burst", sa.Integer()),
    ("max_concurrency", sa.Integer()),
    ("max_queue", sa.Integer()),
    ("max_image_bytes", sa.BigInteger()),
    ("max_image_pixels", sa.BigInteger()),
    ("daily_requests", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        for name, kind in _QUOTA_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        batch_op.add_column(sa.Column("weight", sa.Float(), nullable=False, server_default="1.0"))
        batch_op.add_column(sa.Column("isolation", sa.String(length=16), nullable=False, server_default="shared"))
    op.create_table(
        "daily_usage",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "day"),
    )


def downgrade() -> None:
    op.drop_table("daily_usage")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        for name in ("isolation", "weight", *(n for n, _ in reversed(_QUOTA_COLUMNS))):
            batch_op.drop_column(name)
