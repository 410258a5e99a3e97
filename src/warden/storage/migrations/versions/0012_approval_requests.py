"""approval requests: tenant-owned approvals, their decision state and who took it, and name:version datasets

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08

Approvals recorded before (all on the host, by ``warden approval create``) become operator
approvals: ``approved`` (``revoked`` where they were), requested and decided by ``cli:<user>``
as their ``created_by`` says, decided when created, bound to no tenant. They admit jobs as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_FK: Final = "approvals_tenant_id_fkey"
_COLUMNS: Final = (
    "state",
    "requested_by",
    "requested_by_kind",
    "decided_by",
    "decided_at",
    "reason",
    "revoked_by",
    "revoke_reason",
    "runtimes",
    "max_gpus",
)


def upgrade() -> None:
    # SQLite adds a foreign key only by copying the table (batch mode); PostgreSQL alters it in place.
    with _datasets_kept(), op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("state", sa.String(length=16), server_default="approved", nullable=False))
        batch_op.add_column(sa.Column("requested_by", sa.String(length=128), server_default="", nullable=False))
        batch_op.add_column(sa.Column("requested_by_kind", sa.String(length=16), server_default="cli", nullable=False))
        batch_op.add_column(sa.Column("decided_by", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("revoked_by", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("revoke_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("runtimes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("max_gpus", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_foreign_key(_FK, "tenants", ["tenant_id"], ["id"], ondelete="CASCADE")
        batch_op.create_index("ix_approvals_tenant_id", ["tenant_id"])
    op.execute(
        "UPDATE approvals SET requested_by = 'cli:' || created_by, decided_by = 'cli:' || created_by, "
        "decided_at = created_at"
    )
    op.execute("UPDATE approvals SET state = 'revoked', revoked_by = 'cli:' || created_by WHERE revoked_at IS NOT NULL")
    op.create_table(
        "approval_dataset_refs",
        sa.Column("approval_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["approval_id"], ["approvals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("approval_id", "position"),
    )
    op.create_index("ix_approval_dataset_refs_name_version", "approval_dataset_refs", ["name", "version"])


def downgrade() -> None:
    # What 0011 cannot say is removed rather than widened: a pending, rejected or withdrawn request, or any
    # tenant's, would otherwise become an active approval there.
    op.drop_index("ix_approval_dataset_refs_name_version", table_name="approval_dataset_refs")
    op.drop_table("approval_dataset_refs")
    op.execute("DELETE FROM approvals WHERE tenant_id IS NOT NULL OR state NOT IN ('approved', 'revoked')")
    with _datasets_kept(), op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_tenant_id")
        batch_op.drop_constraint(_FK, type_="foreignkey")
        for column in ("tenant_id", *_COLUMNS):
            batch_op.drop_column(column)


@contextmanager
def _datasets_kept() -> Iterator[None]:
    """Keep approval_datasets' rows through a copy of ``approvals`` on SQLite.

    Batch mode copies the table and drops the original; with foreign keys on, SQLite's DROP TABLE
    deletes the rows that reference it, by their cascade: every approval's dataset hashes. They are
    copied aside first and put back once the new table has the old name.
    """
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    op.execute("CREATE TEMPORARY TABLE approval_datasets_kept AS SELECT * FROM approval_datasets")
    yield
    op.execute("DELETE FROM approval_datasets")
    op.execute("INSERT INTO approval_datasets SELECT * FROM approval_datasets_kept")
    op.execute("DROP TABLE approval_datasets_kept")
