"""``warden dataset push|list|show|delete``: the dataset service from the command line, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Warden, one_error_line
from warden.audit import AuditFilter

RAW = ["jane.doe@example.com", "DE89370400440532013000", "john.roe@example.org", "GB82WEST12345698765432"]


@pytest.fixture
def customers(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text(f"email,iban,amount\n{RAW[0]},{RAW[1]},12.5\n{RAW[2]},{RAW[3]},7\n")
    return path


def test_a_pushed_file_is_stored_de_identified_listed_shown_and_erased(
    warden_on_each_backend: Warden, customers: Path
) -> None:
    warden = warden_on_each_backend
    warden.json("tenant", "create", "bank")
    pushed = warden.json("dataset", "push", "bank", "customers", customers)
    assert (pushed["version"], pushed["rows"], pushed["format"], pushed["policy"]) == (1, 2, "csv", "auto")
    assert not any(value in str(pushed) for value in RAW)
    with warden.services() as services:
        bank = services.tenants.tenant_id("bank")
        stored = services.datasets.read(bank, "customers").decode()
        assert not any(value in stored for value in RAW)
        assert stored.splitlines()[0].replace('"', "").split(",") == ["email", "iban", "amount"]
        assert len(stored.splitlines()) == 3  # the header and both rows, pseudonymised
    assert warden.json("dataset", "push", "bank", "customers", customers)["version"] == 2
    (listed,) = warden.json("dataset", "list", "bank")
    assert [v["version"] for v in listed["versions"]] == [1, 2]
    assert warden.json("dataset", "show", "bank", "customers")["versions"][0]["sha256"] == pushed["sha256"]
    (erased,) = warden.json("dataset", "delete", "bank", "customers:1", "--yes")
    assert erased["erased"] is True
    assert erased["sha256"] == pushed["sha256"]  # the hash and the fact of erasure stay
    shown = warden.json("dataset", "show", "bank", "customers")
    assert [v["erased"] for v in shown["versions"]] == [True, False]
    with warden.services() as services:
        assert services.audit.flush(timeout=30)
        events = [e.event for e in services.audit.scan(AuditFilter()) if e.event.target == "bank/customers"]
    actions = [event.action for event in events]
    records = " ".join(str(event) for event in events)
    assert actions.count("dataset.push") == 2
    assert "dataset.delete" in actions
    assert not any(value in records for value in RAW)


def test_a_file_of_no_known_format_is_refused_before_anything_is_stored(warden: Warden, tmp_path: Path) -> None:
    warden.json("tenant", "create", "bank")
    odd = tmp_path / "customers.xlsx"
    odd.write_bytes(b"PK\x03\x04")
    result = warden("dataset", "push", "bank", "customers", odd)
    assert result.exit_code != 0
    assert "unsupported_file" in one_error_line(result)
    assert warden.json("dataset", "list", "bank") == []


def test_erasing_without_confirmation_erases_nothing(warden: Warden, customers: Path) -> None:
    warden.json("tenant", "create", "bank")
    warden.json("dataset", "push", "bank", "customers", customers)
    result = warden("dataset", "delete", "bank", "customers", stdin="n\n")
    assert result.exit_code != 0
    assert "aborted" in result.stderr
    assert warden.json("dataset", "show", "bank", "customers")["versions"][0]["erased"] is False
