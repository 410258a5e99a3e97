"""Deleting a tenant destroys its vault key and objects: no ciphertext of it is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.errors import NotFound
from warden.services import open_services
from warden.settings import Settings


def test_when_a_tenant_is_deleted_then_its_sealed_objects_are_gone(tmp_path: Path) -> None:
    services = open_services(Settings(data_dir=tmp_path / "data"))
    try:
        services.tenants.create_tenant("bank")
        bank = services.tenants.tenant_id("bank")
        stored = services.vault.put(bank, "dataset", [b"customer rows"])
        assert (tmp_path / "data" / "vault" / str(bank) / stored.id).is_file()
        erased, _ = services.delete_tenant("bank")
        assert erased == 1
        assert not (tmp_path / "data" / "vault" / str(bank)).exists()
        with pytest.raises(NotFound):
            services.vault.get(bank, stored.id)
    finally:
        services.close()
