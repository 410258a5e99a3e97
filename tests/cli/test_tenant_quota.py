"""``warden tenant create/update/show`` with quotas: stored, shown, cleared, validated."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Warden
from warden.tenancy import Quota


def test_a_quota_given_at_creation_is_shown_and_reaches_the_principal(warden: Warden) -> None:
    created = warden.json("tenant", "create", "acme", "--rps", "5", "--burst", "10", "--weight", "2")
    assert created["quota"] == {**Quota().to_dict(), "rps": 5.0, "burst": 10, "weight": 2.0}
    key = warden.json("key", "create", "acme")["key"]
    with warden.services() as services:
        assert services.tenants.authenticate(key).quota == Quota(rps=5, burst=10, weight=2)
    assert warden.json("tenant", "show", "acme") == created


def test_an_update_changes_only_the_given_fields_and_zero_clears(warden: Warden) -> None:
    warden.json("tenant", "create", "acme", "--rps", "5", "--max-queue", "4")
    updated = warden.json(
        "tenant", "update", "acme", "--rps", "0", "--daily-requests", "100", "--isolation", "dedicated"
    )
    assert updated["quota"] == {
        **Quota().to_dict(),
        "max_queue": 4,
        "daily_requests": 100,
        "isolation": "dedicated",
    }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--burst", "3"], "a burst needs a rate"),
        (["--isolation", "private"], "isolation must be"),
        (["--weight", "0"], "--weight"),
        (["--rps", "-1"], "--rps"),
        (["--daily-requests", str(2**31)], "daily_requests must be at most 2147483647"),
        (["--max-queue", str(2**40)], "max_queue must be at most"),
        (["--rps", "inf"], "rps must be a finite number"),
    ],
)
def test_an_invalid_quota_is_refused_and_nothing_changes(warden: Warden, args: list[str], needle: str) -> None:
    warden.json("tenant", "create", "acme")
    result = warden("tenant", "update", "acme", *args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert warden.json("tenant", "show", "acme")["quota"] == Quota().to_dict()


def test_showing_a_missing_tenant_is_tenant_not_found(warden: Warden) -> None:
    result = warden("tenant", "show", "ghost")
    assert result.exit_code == 1
    assert "tenant_not_found" in result.stderr
