"""Fixtures: a migrated database on each backend with two tenants, ``bank`` and ``other``.

The vault's and the datasets' tests share them (``pytest_plugins`` in tests/conftest.py); a test module
that defines its own ``db`` or ``tenants`` keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import BACKENDS, migrated_database
from warden.storage import Database
from warden.tenancy import TenantService

SECRET = b"s" * 32
"""The server secret of these tests' tenants and vaults."""


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with migrated_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def tenants(db: Database) -> tuple[int, int]:
    service = TenantService(db, SECRET)
    for name in ("bank", "other"):
        service.create_tenant(name)
    return service.tenant_id("bank"), service.tenant_id("other")
