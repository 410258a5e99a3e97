"""Real database backends for tests: SQLite in a temp dir, and PostgreSQL in a schema of its own.

PostgreSQL is the machine's service at 127.0.0.1:5432 (trust auth, database
``test``); each test gets a fresh schema, dropped afterwards. Where the service
is absent the PostgreSQL case skips with a loud reason.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from warden.storage import Database

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of ``backend``, removed when the block ends."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'warden.db'}"
        return
    schema = f"warden_test_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc.orig}); PostgreSQL tests NOT run")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def migrated_database(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A migrated :class:`~warden.storage.Database` on an empty database of ``backend``, closed afterwards."""
    with database_url(backend, tmp_path) as url:
        database = Database(url)
        database.migrate()
        try:
            yield database
        finally:
            database.close()
