"""The database handle: migrations are idempotent and SQLite runs in WAL with foreign keys."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from tests.backends import BACKENDS, database_url
from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.errors import ApprovalRefusal, ApprovalRefused
from warden.jobs.admission import Input, admit
from warden.jobs.approval_requests import ApprovalDesk, request_terms
from warden.jobs.approvals import Decision, content_sha256
from warden.services import open_services
from warden.settings import Settings
from warden.storage import Base, Database
from warden.storage.db import MIGRATIONS
from warden.storage.tables import utcnow
from warden.tenancy import Principal, Scope

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
    "approval_dataset_refs",
    "server_meta",
    "console_sessions",
    "dataset_keys",
    "dataset_versions",
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
                assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0013"
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


def _migrate_to(db: Database, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


@pytest.mark.parametrize("backend", BACKENDS)
def test_when_a_database_at_0009_is_upgraded_then_its_versions_are_kept_unmeasured(
    backend: str, tmp_path: Path
) -> None:
    """0010 adds ``measured_run_ms`` and ``run_cap_ms`` as nulls: an old version serves under WARDEN_MAX_RUN_MS."""
    tiny = yolo_graph(anchor_free_rows([Box(32, 32, 20, 10, 1, 0.9)], 3, 84))
    with database_url(backend, tmp_path) as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url, max_run_ms=7000)
        services = open_services(settings)
        try:
            services.tenants.create_tenant("acme")
            pushed = services.registry.push(services.tenants.tenant_id("acme"), "pets", tiny, alias="stable")
            _migrate_to(services.db, "0009", down=True)  # the schema and rows of a server before run caps
            columns = {c["name"] for c in inspect(services.db.engine).get_columns("model_versions")}
            assert not {"measured_run_ms", "run_cap_ms"} & columns
        finally:
            services.close()
        services = open_services(settings)  # migrates to head
        try:
            tenant = services.tenants.tenant_id("acme")
            [version] = services.registry.get_model(tenant, "pets").versions
            assert (version.sha256, version.measured_run_ms, version.run_cap_ms) == (pushed.sha256, None, None)
            assert (version.effective_run_cap_ms, version.run_cap_source) == (7000.0, "max")
            resolved = services.registry.resolve(tenant, "pets")
            assert (resolved.version, resolved.run_cap_ms) == (1, 7000.0)
            assert list(services.registry.get_model(tenant, "pets").aliases) == ["stable"]
            services.registry.set_run_cap(tenant, "pets", 1, 120.0)
            assert services.registry.resolve(tenant, "pets", 1).run_cap_ms == 120.0
        finally:
            services.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_when_a_database_at_0011_is_upgraded_then_its_approvals_are_operator_approvals_that_still_admit_jobs(
    backend: str, tmp_path: Path
) -> None:
    """0012 makes every earlier approval the host's operator approval (approved, or revoked where it was) and keeps
    its dataset hashes (SQLite copies the table, and the copy's DROP would cascade into them); the downgrade
    keeps them too, and removes what 0011 could not tell from an active approval (a tenant's pending request)."""
    data = tmp_path / "tx.csv"
    data.write_text("amount\n12.5\n")
    active, revoked = "apr_" + "a" * 16, "apr_" + "r" * 16
    created = datetime(2026, 11, 30, tzinfo=UTC)
    with database_url(backend, tmp_path) as url:
        db = Database(url)
        try:
            _migrate_to(db, "0011")
            with db.engine.begin() as connection:
                for approval_id, revoked_at in ((active, None), (revoked, datetime(2026, 12, 1, tzinfo=UTC))):
                    connection.execute(
                        text(
                            "INSERT INTO approvals (id, purpose, created_at, created_by, max_runs, runs_used, "
                            "revoked_at, allow_identifiers) VALUES (:id, 'fraud model', :now, 'alice', 2, 0, :revoked, "
                            ":no)"
                        ),
                        {"id": approval_id, "now": created, "revoked": revoked_at, "no": False},
                    )
                    connection.execute(
                        text("INSERT INTO approval_datasets VALUES (:id, 0, :path, :sha)"),
                        {"id": approval_id, "path": str(data), "sha": content_sha256(data)},
                    )
        finally:
            db.close()
        services = open_services(Settings(data_dir=tmp_path / "data", database_url=url))  # migrates to head
        try:
            kept = services.approvals.get(active)
            assert (kept.tenant, kept.decision, kept.requested_by_kind) == (None, Decision.APPROVED, "cli")
            assert (kept.requested_by, kept.decided_by, kept.decided_at) == ("cli:alice", "cli:alice", created)
            assert (kept.max_gpus, kept.runtimes, kept.dataset_refs) == (0, None, ())
            admitted = admit(services.approvals, active, [Input(data, "tx")], scan=lambda _: [])
            assert admitted.approval.runs_used == 1
            with pytest.raises(ApprovalRefused) as refused:
                admit(services.approvals, revoked, [Input(data, "tx")], scan=lambda _: [])
            assert refused.value.reason is ApprovalRefusal.REVOKED
            assert services.approvals.get(revoked).revoked_by == "cli:alice"
            services.tenants.create_tenant("bank")
            scientist = Principal(services.tenants.tenant_id("bank"), "bank", "5c1e00000000", Scope.TRAIN, "api_key")
            terms = request_terms(utcnow(), purpose="p", datasets=["tx:1"], max_runs=1, expires="1d")
            pending = ApprovalDesk(services.approvals).submit(scientist, terms)
        finally:
            services.close()
        db = Database(url)
        try:
            _migrate_to(db, "0011", down=True)
            with db.engine.connect() as connection:
                assert connection.execute(text("SELECT id FROM approvals ORDER BY id")).scalars().all() == [
                    active,
                    revoked,
                ]
                hashes = connection.execute(text("SELECT approval_id, sha256 FROM approval_datasets ORDER BY 1"))
                assert hashes.all() == [(active, content_sha256(data)), (revoked, content_sha256(data))]
                assert pending.id not in connection.execute(text("SELECT id FROM approvals")).scalars().all()
        finally:
            db.close()
