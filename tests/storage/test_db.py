"""The database handle: migrations are idempotent and SQLite runs in WAL with foreign keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from tests.backends import BACKENDS, database_url
from warden.storage import Base, Database

TABLES = {
    "tenants",
    "api_keys",
    "models",
    "model_versions",
    "model_aliases",
    "daily_usage",
    "alembic_version",
    "audit_records",
    "audit_checkpoints",
    "audit_streams",
    "audit_ship_positions",
    "approvals",
    "approval_datasets",
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_when_migrations_run_twice_then_the_schema_is_complete_and_unchanged(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path) as url:
        db = Database(url)
        try:
            db.migrate()
            db.migrate()
            assert set(inspect(db.engine).get_table_names()) >= TABLES
            with db.engine.connect() as connection:
                assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0006"
                # The migrations build exactly the schema the table classes declare.
                assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        finally:
            db.close()


def test_when_sqlite_is_opened_then_wal_foreign_keys_and_full_sync_are_on(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nested' / 'warden.db'}")
    try:
        with db.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
            assert connection.execute(text("PRAGMA synchronous")).scalar_one() == 2
        assert (tmp_path / "nested").is_dir()
    finally:
        db.close()
