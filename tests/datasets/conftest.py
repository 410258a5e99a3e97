"""Shared helpers for the dataset tests: a bank's customers as CSV (valid IBANs), tmpfs staging, the service."""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.two_tenants import SECRET
from warden.datasets import DatasetService
from warden.datasets.staging import filesystem_type
from warden.storage import Database
from warden.vault import SecretKeyWrapper, Vault

HEADER = ["name", "iban", "email", "phone", "birth_date", "amount"]
FIRST = ["Annegret", "Bernhard", "Clothilde", "Dietmar", "Elfriede", "Friedhelm", "Gundula", "Hartmut"]
LAST = ["Schwarzkopf", "Oberländer", "Vogelsang", "Kesselring", "Mannheimer"]

SHM = Path("/dev/shm")  # noqa: S108 (each test makes its own folder there)


def iban(n: int) -> str:
    """A German IBAN with a valid checksum, unique per ``n``, grouped in fours as printed."""
    bban = f"37040044{n:010d}"
    digits = "".join(str(int(c, 36)) for c in bban + "DE00")
    plain = f"DE{98 - int(digits) % 97:02d}{bban}"
    return " ".join(plain[i : i + 4] for i in range(0, len(plain), 4))


def customer(n: int) -> list[str]:
    """Row ``n`` of the bank's customer table."""
    return [
        f"{FIRST[n % 8]} {LAST[n % 5]}-{n}",
        iban(n),
        f"kunde.{FIRST[n % 8].lower()}{n}@bank-example.de",
        f"+49 30 2345 6{n:03d}",
        f"19{55 + n % 40}-{1 + n % 12:02d}-{1 + n % 28:02d}",
        f"{n * 17.25 + 1000:.2f}",
    ]


CUSTOMERS = [customer(n) for n in range(50)]


def customers_csv(rows: list[list[str]] = CUSTOMERS) -> bytes:
    """The customer table as CSV bytes."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode()


@pytest.fixture
def staging_dir() -> Iterator[Path]:
    """A fresh folder on /dev/shm (a tmpfs); the tests skip loudly where /dev/shm is no tmpfs."""
    if filesystem_type(SHM) != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs here: dataset staging tests NOT run")  # noqa: S108
    folder = Path(tempfile.mkdtemp(prefix="warden-test-staging-", dir=SHM))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def vault(db: Database, tmp_path: Path) -> Vault:
    return Vault(db, SecretKeyWrapper(SECRET, ()), tmp_path / "vault")


def service_of(
    db: Database, vault: Vault, staging_dir: Path, *, max_bytes: int = 1 << 20, quota_bytes: int = 1 << 30
) -> DatasetService:
    """A dataset service without NER (names are found by their column), over the test's database and vault."""
    return DatasetService(db, vault, staging_dir=staging_dir, max_bytes=max_bytes, quota_bytes=quota_bytes, ner=False)


@pytest.fixture
def datasets(db: Database, vault: Vault, staging_dir: Path) -> DatasetService:
    return service_of(db, vault, staging_dir)
