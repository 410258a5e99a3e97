"""The database handle: migrations are idempotent and SQLite runs in WAL with foreign keys."""

from __future__ import annotations

import subprocess
import sys
import time
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
    "server_meta",
    "console_sessions",
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
                assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0009"
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


_MIGRATE_AT = """
import sys, time
from warden.storage import Database
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
db = Database(sys.argv[1])
db.migrate()
db.close()
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_when_replicas_migrate_at_the_same_moment_then_each_succeeds_and_the_schema_is_built_once(
    backend: str, tmp_path: Path
) -> None:
    with database_url(backend, tmp_path) as url:
        start = time.time() + 3  # every process has imported Warden and waits for the same instant
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", _MIGRATE_AT, url, str(start)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for _ in range(4)
        ]
        outputs = [process.communicate(timeout=120)[0].decode() for process in processes]
        assert [process.returncode for process in processes] == [0] * 4, outputs
        db = Database(url)
        try:
            with db.engine.connect() as connection:
                assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
                assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        finally:
            db.close()
