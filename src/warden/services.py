"""The composition root: builds the service objects every front end (HTTP, CLI) drives."""

from __future__ import annotations

from dataclasses import dataclass

from warden.audit import AuditLog
from warden.datasets import DatasetService
from warden.jobs.approvals import ApprovalService
from warden.registry import BlobStore, ModelRegistry
from warden.settings import Settings
from warden.storage import Database
from warden.storage.db import private_directory
from warden.tenancy import Authenticator, JwtVerifier, TenantService, load_server_secret
from warden.tenancy.keys import previous_secrets
from warden.tenancy.sessions import ConsoleSessions
from warden.vault import SecretKeyWrapper, Vault


@dataclass(frozen=True, slots=True)
class Services:
    """The state services over one data directory and database."""

    settings: Settings
    db: Database
    tenants: TenantService
    registry: ModelRegistry
    authenticator: Authenticator
    audit: AuditLog
    approvals: ApprovalService
    console: ConsoleSessions
    vault: Vault
    datasets: DatasetService

    def delete_tenant(self, name: str) -> tuple[int, set[str]]:
        """Delete a tenant with its keys and models, destroy its vault key and objects, then the model blobs
        nobody else uses; ``(objects erased, blobs removed)``."""
        tenant_id = self.tenants.tenant_id(name)
        erased = self.vault.forget_tenant(tenant_id)
        self.tenants.delete_tenant(name)
        return erased, self.registry.collect_garbage()

    def close(self) -> None:
        """Commit and seal the audit records still queued, then release database connections."""
        try:
            self.audit.close()
        finally:
            self.db.close()


def open_services(settings: Settings) -> Services:
    """Create the data directory if needed (0700; an existing one is tightened), migrate the database, and wire
    the services.

    A failure on the way (a secret that does not match the database's, a bad JWT key file)
    releases the database connections before it propagates.
    """
    private_directory(settings.data_dir)
    db = Database(settings.resolved_database_url)
    try:
        return _wire(settings, db)
    except BaseException:
        db.close()
        raise


def _wire(settings: Settings, db: Database) -> Services:
    db.migrate()
    configured = settings.secret_key.get_secret_value() if settings.secret_key is not None else None
    secret = load_server_secret(settings.data_dir, configured)
    previous = previous_secrets([value.get_secret_value() for value in settings.previous_secret_keys])
    tenants = TenantService(db, secret, cache_seconds=settings.cache_seconds, previous_secrets=previous)
    tenants.bind_secret()
    verifier = None
    if settings.jwt_issuer is not None:
        verifier = JwtVerifier.from_files(
            tenants,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            jwks_file=settings.jwt_jwks_file,
            public_key_file=settings.jwt_public_key_file,
            algorithms=settings.jwt_algorithms,
            max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
            tenant_claim=settings.jwt_tenant_claim,
            scope_claim=settings.jwt_scope_claim,
        )
    vault = Vault(db, SecretKeyWrapper(secret, previous), settings.data_dir / "vault")
    return Services(
        settings=settings,
        db=db,
        tenants=tenants,
        registry=ModelRegistry(
            db,
            BlobStore(settings.resolved_model_store),
            settings.max_model_bytes,
            cache_seconds=settings.cache_seconds,
            share_across_tenants=settings.share_models == "across-tenants",
            session_memory_limit=settings.session_memory_limit,
            max_run_ms=settings.max_run_ms,
            threads=settings.threads,
        ),
        authenticator=Authenticator(
            tenants, verifier, None if settings.serve_tenants is None else frozenset(settings.serve_tenants)
        ),
        audit=AuditLog.from_settings(db, settings, secret, previous),
        approvals=ApprovalService(db),
        console=ConsoleSessions(db, tenants, secret, settings.console_session_seconds),
        vault=vault,
        datasets=DatasetService(
            db,
            vault,
            staging_dir=settings.staging_dir,
            max_bytes=settings.max_dataset_bytes,
            quota_bytes=settings.dataset_quota_bytes,
        ),
    )
