"""State storage: SQLAlchemy tables, Alembic migrations, and the database handle.

SQLite (WAL) under the data directory is the embedded default; PostgreSQL is
chosen by URL for several replicas. Both run the same migrations and code.
"""

from warden.storage.dataset_tables import DatasetKey, DatasetVersion
from warden.storage.db import Database
from warden.storage.tables import (
    ApiKey,
    AuditCheckpoint,
    AuditRecord,
    AuditShipPosition,
    AuditStream,
    Base,
    ConsoleSession,
    DailyUsage,
    Model,
    ModelAlias,
    ModelVersion,
    ServerMeta,
    Tenant,
)
from warden.storage.vault_tables import SealedObject, TenantKey

__all__ = [
    "ApiKey",
    "AuditCheckpoint",
    "AuditRecord",
    "AuditShipPosition",
    "AuditStream",
    "Base",
    "ConsoleSession",
    "DailyUsage",
    "Database",
    "DatasetKey",
    "DatasetVersion",
    "Model",
    "ModelAlias",
    "ModelVersion",
    "SealedObject",
    "ServerMeta",
    "Tenant",
    "TenantKey",
]
