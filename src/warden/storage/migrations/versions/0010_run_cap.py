"""per-version run-time cap: the slowest run measured at upload and an operator's cap

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions pushed before keep nulls: never measured, their cap is WARDEN_MAX_RUN_MS.
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("measured_run_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("run_cap_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite >= 3.35), never a copy of the table: with foreign keys on, SQLite's
    # DROP TABLE of the original would cascade into model_aliases and delete every alias.
    with op.batch_alter_table("model_versions", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("run_cap_ms")
        batch_op.drop_column("measured_run_ms")
