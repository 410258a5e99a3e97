"""Datasets over real SQLite and PostgreSQL: de-identified on ingestion, sealed at rest, versioned, erasable."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from tests.datasets.conftest import CUSTOMERS, HEADER, customers_csv, service_of
from warden.datasets import DatasetService
from warden.datasets.staging import check_staging, filesystem_type
from warden.errors import (
    DatasetNotFound,
    InvalidArgument,
    ObjectErased,
    PayloadTooLarge,
    PolicyUnavailable,
    StagingUnavailable,
    StorageQuotaExceeded,
    UnsupportedDatasetFormat,
    UnsupportedFile,
)
from warden.storage import Database, DatasetKey
from warden.vault import Vault


def cells(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def files_under(root: Path, since: float) -> list[Path]:
    """Regular files under ``root`` written since ``since`` (the system temp dir holds other runs' files too)."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= since - 1:
                    found.append(path)
            except OSError:
                continue
    return found


def test_when_a_customer_table_is_pushed_then_no_raw_or_deidentified_value_is_on_any_disk_or_staging(
    datasets: DatasetService, tenants: tuple[int, int], tmp_path: Path, staging_dir: Path
) -> None:
    bank, _ = tenants
    started = time.time()
    pushed = datasets.push(bank, "customers", customers_csv(), "csv", actor="key:k1")
    stored = cells(datasets.read(bank, "customers"))
    assert len(stored) == pushed.rows == 50
    raw = [row[n % 4] for n, row in enumerate(CUSTOMERS)]  # names, IBANs, e-mails and phones in turn
    result = [row[HEADER[n % 4]] for n, row in enumerate(stored)]  # pseudonyms and placeholders
    result = [value for value in result if len(value) >= 8]  # long enough to be searched without chance hits
    assert len(set(raw)) == 50
    assert len(result) >= 25
    assert not set(raw) & {value for row in stored for value in row.values()}
    files = [
        *files_under(tmp_path, started),  # the data dir: SQLite database and its WAL, the vault
        *files_under(staging_dir, started),
        *files_under(Path(tempfile.gettempdir()), started),
    ]
    assert any(path.parent.parent == tmp_path / "vault" for path in files)  # the sealed objects were searched
    hits = []
    for path in set(files):
        try:
            content = path.read_bytes()
        except OSError:
            continue
        hits += [(path, value) for value in [*raw, *result] if value.encode() in content]
    assert hits == []
    assert list(staging_dir.iterdir()) == []


def test_pushes_make_versions_with_hashes_rows_and_a_report_of_entities_per_column(
    datasets: DatasetService, tenants: tuple[int, int]
) -> None:
    bank, _ = tenants
    first = datasets.push(bank, "customers", customers_csv(), "csv", actor="key:k1")
    second = datasets.push(bank, "customers", customers_csv(CUSTOMERS[:10]), "csv", actor="key:k2")
    assert (first.version, second.version) == (1, 2)
    assert (first.rows, second.rows) == (50, 10)
    assert first.sha256 != second.sha256
    assert len(first.sha256) == 64
    assert first.source_bytes == len(customers_csv())
    columns = {c["name"]: c for c in first.report["columns"]}
    assert columns["email"]["entities"].get("EMAIL_ADDRESS", columns["email"]["entities"].get("EMAIL")) == 50
    assert columns["name"]["direct_identifier"] is not None
    assert columns["name"]["op"] != "keep"
    assert columns["iban"]["op"] != "keep"
    assert columns["amount"]["op"] == "keep"
    assert columns["birth_date"]["quasi_identifier"] == "date"
    assert "k" in first.report
    assert "examples" not in json.dumps(first.report)
    view = datasets.get(bank, "customers")
    assert [v.version for v in view.versions] == [1, 2]
    assert view.latest == second
    assert [d.name for d in datasets.list(bank)] == ["customers"]
    assert datasets.version(bank, "customers", 1) == first
    assert datasets.stored_bytes(bank) == first.size_bytes + second.size_bytes


def test_erasure_makes_a_version_unreadable_and_keeps_its_hashes_and_the_fact(
    datasets: DatasetService, tenants: tuple[int, int], vault: Vault
) -> None:
    bank, _ = tenants
    first = datasets.push(bank, "customers", customers_csv(), "csv", actor="key:k1")
    second = datasets.push(bank, "customers", customers_csv(CUSTOMERS[:5]), "csv", actor="key:k1")
    (erased,) = datasets.delete(bank, "customers", 1, actor="key:dpo")
    assert erased.erased
    assert erased.erased_by == "key:dpo"
    assert erased.sha256 == first.sha256
    with pytest.raises(ObjectErased):
        datasets.read(bank, "customers", 1)
    assert datasets.read(bank, "customers") == datasets.read(bank, "customers", 2)
    assert datasets.stored_bytes(bank) == second.size_bytes
    datasets.delete(bank, "customers", actor="key:dpo")
    view = datasets.get(bank, "customers")
    assert view.latest is None
    assert all(v.erased for v in view.versions)
    assert [v.sha256 for v in view.versions] == [first.sha256, second.sha256]
    with pytest.raises(ObjectErased):
        datasets.read(bank, "customers", 2)
    with pytest.raises(DatasetNotFound):
        datasets.read(bank, "customers")
    assert datasets.push(bank, "customers", customers_csv(), "csv", actor="key:k1").version == 3


def test_another_tenants_dataset_answers_exactly_like_a_missing_one(
    datasets: DatasetService, tenants: tuple[int, int]
) -> None:
    bank, other = tenants
    datasets.push(bank, "customers", customers_csv(), "csv", actor="key:k1")
    for call in (
        datasets.get,
        lambda t, n: datasets.version(t, n, 1),
        datasets.read,
        lambda t, n: datasets.delete(t, n, actor="key:x"),
    ):
        with pytest.raises(DatasetNotFound) as theirs:
            call(other, "customers")
        with pytest.raises(DatasetNotFound) as missing:
            call(other, "nothing")
        assert str(theirs.value).replace("customers", "X") == str(missing.value).replace("nothing", "X")
    assert datasets.list(other) == []
    assert datasets.read(bank, "customers")


def test_each_tenant_gets_its_own_sealed_key_so_pseudonyms_are_stable_within_and_differ_across(
    datasets: DatasetService, tenants: tuple[int, int], db: Database, vault: Vault
) -> None:
    bank, other = tenants
    a = datasets.push(bank, "customers", customers_csv(), "csv", actor="key:k1")
    b = datasets.push(bank, "again", customers_csv(), "csv", actor="key:k1")
    c = datasets.push(other, "customers", customers_csv(), "csv", actor="key:k9")
    assert a.key_id == b.key_id != c.key_id
    assert a.sha256 == b.sha256 != c.sha256
    names = [row["name"] for row in cells(datasets.read(bank, "customers"))]
    assert names == [row["name"] for row in cells(datasets.read(bank, "again"))]
    assert set(names).isdisjoint(row["name"] for row in cells(datasets.read(other, "customers")))
    with db.session() as session:
        key_object = session.get(DatasetKey, bank)
        assert key_object is not None
        object_id = key_object.object_id
    assert vault.get(bank, object_id).kind == "deid_key"
    assert len(vault.read(bank, object_id)) == 32


@pytest.mark.parametrize(
    ("fmt", "data", "rows"),
    [
        ("jsonl", b'{"email": "kunde.anna@bank-example.de", "amount": 3}\n{"email": "x.y@bank-example.de"}\n', 2),
        ("text", b"Call +49 30 2345 6001 or write to kunde.anna@bank-example.de\nall good\n", 2),
    ],
)
def test_json_lines_and_text_are_stored_de_identified(
    datasets: DatasetService, tenants: tuple[int, int], fmt: str, data: bytes, rows: int
) -> None:
    bank, _ = tenants
    pushed = datasets.push(bank, "notes", data, fmt, actor="key:k1")
    assert pushed.rows == rows
    assert pushed.format == fmt
    assert b"kunde.anna@bank-example.de" not in datasets.read(bank, "notes")


def test_parquet_is_stored_de_identified(datasets: DatasetService, tenants: tuple[int, int]) -> None:
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    bank, _ = tenants
    sink = io.BytesIO()
    pq.write_table(pa.table({"email": [r[2] for r in CUSTOMERS], "amount": [r[5] for r in CUSTOMERS]}), sink)
    pushed = datasets.push(bank, "table", sink.getvalue(), "parquet", actor="key:k1")
    stored = pq.read_table(io.BytesIO(datasets.read(bank, "table")))
    assert pushed.rows == stored.num_rows == 50
    assert set(stored.column("email").to_pylist()).isdisjoint(r[2] for r in CUSTOMERS)


@pytest.mark.parametrize(
    ("name", "fmt", "policy", "error"),
    [
        ("customers", "images", "auto", UnsupportedDatasetFormat),
        ("customers", "zip", "auto", UnsupportedDatasetFormat),
        ("customers", "xlsx", "auto", UnsupportedDatasetFormat),
        ("customers", "csv", "strict", PolicyUnavailable),
        ("Customers!", "csv", "auto", InvalidArgument),
        ("../x", "csv", "auto", InvalidArgument),
    ],
)
def test_refusals_before_any_work_have_stable_codes(
    datasets: DatasetService,
    tenants: tuple[int, int],
    staging_dir: Path,
    name: str,
    fmt: str,
    policy: str,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        datasets.push(tenants[0], name, customers_csv(), fmt, policy, actor="key:k1")
    assert list(staging_dir.iterdir()) == []


def test_an_upload_over_the_cap_is_refused_payload_too_large(
    db: Database, vault: Vault, staging_dir: Path, tenants: tuple[int, int]
) -> None:
    data = customers_csv()
    capped = service_of(db, vault, staging_dir, max_bytes=len(data) - 1)
    with pytest.raises(PayloadTooLarge):
        capped.push(tenants[0], "customers", data, "csv", actor="key:k1")
    assert capped.push(tenants[0], "customers", data[: len(data) // 2].rsplit(b"\n", 1)[0], "csv", actor="key:k1")


def test_pushes_past_the_storage_quota_are_refused_until_versions_are_erased(
    db: Database, vault: Vault, staging_dir: Path, tenants: tuple[int, int]
) -> None:
    bank, other = tenants
    probe = service_of(db, vault, staging_dir).push(other, "probe", customers_csv(), "csv", actor="key:k1")
    limited = service_of(db, vault, staging_dir, quota_bytes=probe.size_bytes + 10)
    limited.push(bank, "customers", customers_csv(), "csv", actor="key:k1")
    with pytest.raises(StorageQuotaExceeded) as refused:
        limited.push(bank, "customers", customers_csv(), "csv", actor="key:k1")
    assert refused.value.code == "storage_quota_exceeded"
    assert refused.value.retry_after > 0
    assert [v.version for v in limited.get(bank, "customers").versions] == [1]
    assert list(staging_dir.iterdir()) == []
    limited.delete(bank, "customers", actor="key:k1")
    assert limited.push(bank, "customers", customers_csv(), "csv", actor="key:k1").version == 2


def test_staging_is_removed_after_a_failed_de_identification(
    datasets: DatasetService, tenants: tuple[int, int], staging_dir: Path, vault: Vault
) -> None:
    with pytest.raises(UnsupportedFile):
        datasets.push(tenants[0], "table", b"PAR1 not really parquet " + customers_csv(), "parquet", actor="key:k1")
    assert list(staging_dir.iterdir()) == []
    with pytest.raises(DatasetNotFound):
        datasets.get(tenants[0], "table")


def test_staging_on_a_disk_is_refused_naming_the_setting(
    db: Database, vault: Vault, tenants: tuple[int, int], tmp_path: Path
) -> None:
    if filesystem_type(tmp_path) in {"tmpfs", "ramfs"}:
        pytest.skip("the test's temporary folder is itself a tmpfs here")
    on_disk = service_of(db, vault, tmp_path)
    with pytest.raises(StagingUnavailable, match="WARDEN_STAGING_DIR"):
        on_disk.push(tenants[0], "customers", customers_csv(), "csv", actor="key:k1")
    with pytest.raises(StagingUnavailable, match="does not exist"):
        check_staging(tmp_path / "missing")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/dev/shm/warden", "tmpfs"),  # noqa: S108
        ("/dev/shm", "tmpfs"),  # noqa: S108
        ("/dev/shmx", "devtmpfs"),  # noqa: S108
        ("/srv/data/x", "ext4"),
        ("/run/user/1000/s", "tmpfs"),
    ],
)
def test_the_filesystem_of_a_path_is_that_of_its_longest_mount_point(tmp_path: Path, path: str, expected: str) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/root / ext4 rw 0 0\ndevtmpfs /dev devtmpfs rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n"
        "/dev/sdb1 /srv/data ext4 rw 0 0\ntmpfs /run/user/1000 tmpfs rw 0 0\n"
    )
    assert filesystem_type(Path(path), mounts) == expected
