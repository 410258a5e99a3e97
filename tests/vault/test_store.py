"""The vault over real SQLite and PostgreSQL: encrypted at rest, tenant-bound, erasable by destroying the key."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.two_tenants import SECRET
from warden.errors import InvalidArgument, NotFound, ObjectErased, StorageCorrupt
from warden.storage import Database, SealedObject, TenantKey
from warden.vault import SecretKeyWrapper, Vault
from warden.vault.sealing import unwrap_key, wrap_key

MARKERS = [f"DE89 3704 0044 0532 0130 {n:02d}|jane.doe{n}@example.com".encode() for n in range(50)]


def vault_of(db: Database, root: Path, secret: bytes = SECRET, previous: tuple[bytes, ...] = ()) -> Vault:
    return Vault(db, SecretKeyWrapper(secret, previous), root)


def test_an_object_reads_back_as_stored_and_its_facts_describe_the_plaintext(
    db: Database, tenants: tuple[int, int], tmp_path: Path
) -> None:
    vault, (bank, _) = vault_of(db, tmp_path / "vault"), tenants
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks and a short last one
    stored = vault.put(bank, "dataset", (data[i : i + 70_000] for i in range(0, len(data), 70_000)))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size_bytes == len(data)
    assert vault.read(bank, stored.id) == data
    assert vault.get(bank, stored.id) == stored


def test_no_stored_byte_and_no_key_is_in_the_clear_anywhere_on_disk(
    db: Database, tenants: tuple[int, int], tmp_path: Path
) -> None:
    vault, (bank, _) = vault_of(db, tmp_path / "vault"), tenants
    stored = vault.put(bank, "dataset", [b"\n".join(MARKERS)])
    with db.session() as session:
        tenant_row = session.get(TenantKey, bank)
        object_row = session.get(SealedObject, stored.id)
        assert tenant_row is not None
        assert object_row is not None
        assert object_row.wrapped_key is not None
        tenant_key = SecretKeyWrapper(SECRET).unwrap(
            tenant_row.wrapped, b"warden tenant key:%d" % bank, tenant_row.kek_id
        )
        data_key = unwrap_key(tenant_key, object_row.wrapped_key, b"warden object:%d:%s" % (bank, stored.id.encode()))
    searched = 0
    for path in tmp_path.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            searched += 1
            assert not any(marker in content for marker in MARKERS), path
            assert tenant_key not in content, path
            assert data_key not in content, path
    assert searched >= 1  # the sealed object (and the SQLite database and its WAL, where that is the backend)


def test_another_tenants_object_is_exactly_a_missing_one(
    db: Database, tenants: tuple[int, int], tmp_path: Path
) -> None:
    vault, (bank, other) = vault_of(db, tmp_path / "vault"), tenants
    stored = vault.put(bank, "dataset", [b"rows"])
    missing = "obj_" + "A" * 22
    for action in (vault.get, vault.read, vault.erase):
        with pytest.raises(NotFound) as theirs:
            action(other, stored.id)
        with pytest.raises(NotFound) as absent:
            action(other, missing)
        assert type(theirs.value) is type(absent.value) is NotFound
        assert theirs.value.message.replace(stored.id, missing) == absent.value.message
    assert vault.read(bank, stored.id) == b"rows"  # untouched by the other tenant's erase


def test_after_erasure_no_copy_of_the_bytes_can_be_decrypted(
    db: Database, tenants: tuple[int, int], tmp_path: Path
) -> None:
    vault, (bank, _) = vault_of(db, tmp_path / "vault"), tenants
    stored = vault.put(bank, "dataset", [b"\n".join(MARKERS)])
    copy = tmp_path / "stolen-copy"
    shutil.copy(tmp_path / "vault" / str(bank) / stored.id, copy)
    erased = vault.erase(bank, stored.id)
    assert erased.erased_at is not None  # the fact stays, and the hash
    assert erased.sha256 == stored.sha256
    assert not (tmp_path / "vault" / str(bank) / stored.id).exists()
    with pytest.raises(ObjectErased):
        vault.read(bank, stored.id)
    with db.session() as session:
        row = session.get(SealedObject, stored.id)
        assert row is not None
        assert row.wrapped_key is None  # the database, the secret and the copy: no data key among them
    assert vault.erase(bank, stored.id).erased_at == erased.erased_at  # erasing again changes nothing


def test_a_changed_ciphertext_or_wrapped_key_is_refused(db: Database, tenants: tuple[int, int], tmp_path: Path) -> None:
    vault, (bank, _) = vault_of(db, tmp_path / "vault"), tenants
    stored = vault.put(bank, "dataset", [b"x" * 5000])
    path = tmp_path / "vault" / str(bank) / stored.id
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(StorageCorrupt):
        vault.read(bank, stored.id)
    second = vault.put(bank, "dataset", [b"y"])
    with db.session() as session:
        first_row, second_row = session.get(SealedObject, stored.id), session.get(SealedObject, second.id)
        assert first_row is not None
        assert second_row is not None
        second_row.wrapped_key = first_row.wrapped_key  # another object's data key, moved over
    with pytest.raises(StorageCorrupt):
        vault.read(bank, second.id)


def test_another_server_secret_cannot_open_the_vault_and_a_rotated_one_rewraps(
    db: Database, tenants: tuple[int, int], tmp_path: Path
) -> None:
    root, (bank, _) = tmp_path / "vault", tenants
    stored = vault_of(db, root).put(bank, "dataset", [b"rows"])
    with pytest.raises(StorageCorrupt, match="WARDEN_PREVIOUS_SECRET_KEYS"):
        vault_of(db, root, secret=b"t" * 32).read(bank, stored.id)
    rotated = vault_of(db, root, secret=b"t" * 32, previous=(SECRET,))
    assert rotated.read(bank, stored.id) == b"rows"
    with db.session() as session:
        kek = session.scalar(select(TenantKey.kek_id).where(TenantKey.tenant_id == bank))
    assert kek == SecretKeyWrapper(b"t" * 32).kek_id  # rewrapped under the current secret on first use
    assert vault_of(db, root, secret=b"t" * 32).read(bank, stored.id) == b"rows"


class FakeKms:
    """A key service of another kind behind the same interface (its own wrapping key, its own id)."""

    kek_id = "kms:test-key-1"

    def __init__(self) -> None:
        self.key = os.urandom(32)
        self.calls = 0

    def wrap(self, key: bytes, context: bytes) -> bytes:
        self.calls += 1
        return wrap_key(self.key, key, context)

    def unwrap(self, wrapped: bytes, context: bytes, kek_id: str) -> bytes:
        assert kek_id == self.kek_id
        self.calls += 1
        return unwrap_key(self.key, wrapped, context)


def test_the_wrapping_step_can_be_another_key_service(db: Database, tenants: tuple[int, int], tmp_path: Path) -> None:
    kms, (bank, _) = FakeKms(), tenants
    vault = Vault(db, kms, tmp_path / "vault")
    stored = vault.put(bank, "job_output", [b"weights"])
    assert vault.read(bank, stored.id) == b"weights"
    assert kms.calls >= 2


def test_files_are_private_whatever_the_umask(db: Database, tenants: tuple[int, int], tmp_path: Path) -> None:
    bank = tenants[0]
    previous = os.umask(0)
    try:
        stored = vault_of(db, tmp_path / "vault").put(bank, "dataset", [b"rows"])
    finally:
        os.umask(previous)
    for folder in (tmp_path / "vault", tmp_path / "vault" / str(bank)):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "vault" / str(bank) / stored.id).stat().st_mode) == 0o600


def test_forgetting_a_tenant_destroys_its_key_and_every_object(
    db: Database, tenants: tuple[int, int], tmp_path: Path
) -> None:
    vault, (bank, other) = vault_of(db, tmp_path / "vault"), tenants
    kept = vault.put(other, "dataset", [b"theirs"])
    ids = [vault.put(bank, "dataset", [bytes([n])]).id for n in range(3)]
    assert vault.forget_tenant(bank) == 3
    for object_id in ids:
        with pytest.raises(NotFound):
            vault.read(bank, object_id)
    assert not (tmp_path / "vault" / str(bank)).exists()
    assert vault.read(other, kept.id) == b"theirs"


@pytest.mark.parametrize("kind", ["", "Dataset", "a" * 40, "job-output", "../x"])
def test_an_object_kind_is_a_short_lowercase_name(
    db: Database, tenants: tuple[int, int], tmp_path: Path, kind: str
) -> None:
    with pytest.raises(InvalidArgument):
        vault_of(db, tmp_path / "vault").put(tenants[0], kind, [b"x"])
    assert not any((tmp_path / "vault").rglob("*")) if (tmp_path / "vault").exists() else True
