"""Audit events: metadata only, validated, one canonical form; client addresses recorded by policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.audit import AddressPolicy, AuditEvent, ClientAddresses, EventKind
from warden.audit.events import canonical_json, format_time
from warden.errors import InvalidArgument

KEY = b"k" * 32


def test_a_request_event_serialises_canonically_without_its_empty_fields() -> None:
    moment = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    event = AuditEvent.request(time=moment, tenant="acme", request_id="r1", status=200, total_ms=1.5)
    assert event.canonical() == (
        '{"kind":"request","request_id":"r1","status":200,"tenant":"acme",'
        '"time":"2026-11-22T09:00:00.123456Z","total_ms":1.5}'
    )
    assert event.time.tzinfo is UTC


def test_an_admin_event_carries_action_target_and_sorted_details() -> None:
    event = AuditEvent.admin("quota.update", "acme", key_id="0123456789ab", details={"rps": 5.0, "burst": 10})
    data = json.loads(event.canonical())
    assert data["kind"] == "admin"
    assert (data["action"], data["target"], data["key_id"]) == ("quota.update", "acme", "0123456789ab")
    assert list(data["details"]) == ["burst", "rps"]


def test_from_dict_rebuilds_the_event_and_ignores_names_it_does_not_know() -> None:
    event = AuditEvent.request(tenant="acme", image_width=640, image_height=480, queue_ms=0.5)
    data = {**event.to_dict(), "added_by_a_later_version": 1}
    assert AuditEvent.from_dict(data) == event


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"kind": "coffee"}, "unknown audit event kind"),
        ({"time": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"status": "200"}, "status must be a number"),
        ({"status": True}, "status must be a number"),
        ({"detections": -1}, ">= 0"),
        ({"total_ms": float("nan")}, "finite"),
        ({"tenant": 7}, "tenant must be a string"),
        ({"route": "x" * 2000}, "longer than"),
        ({"details": {"k": [1, 2]}}, "details.k must be"),
        ({"details": {f"k{i}": i for i in range(40)}}, "at most"),
        ({"target": "wdn_0123456789ab_" + "A" * 43}, "looks like an API key"),
        ({"details": {"note": "key wdn_0123456789ab_" + "b" * 43}}, "looks like an API key"),
    ],
)
def test_when_a_field_is_invalid_or_secret_shaped_then_the_event_is_refused(
    values: dict[str, object], needle: str
) -> None:
    arguments: dict[str, object] = {"kind": "request", "time": datetime.now(UTC), **values}
    with pytest.raises(InvalidArgument, match=needle):
        AuditEvent(**arguments)  # type: ignore[arg-type]


def test_every_event_kind_is_accepted() -> None:
    for kind in EventKind:
        assert AuditEvent(kind).kind is kind


@given(
    tenant=st.text(max_size=40),
    status=st.integers(min_value=0, max_value=999),
    total=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    details=st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
        max_size=5,
    ),
)
def test_the_canonical_form_is_sorted_compact_json_and_round_trips(
    tenant: str, status: int, total: float, details: dict[str, object]
) -> None:
    event = AuditEvent.request(tenant=tenant, status=status, total_ms=total, details=details)  # type: ignore[arg-type]
    text = event.canonical()
    assert text == canonical_json(json.loads(text))
    assert AuditEvent.from_dict(json.loads(text)) == event


def test_times_are_written_in_utc_with_microseconds() -> None:
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"


@pytest.mark.parametrize(
    ("policy", "address", "expected"),
    [
        ("full", "203.0.113.77", "203.0.113.77"),
        ("full", "::ffff:203.0.113.77", "203.0.113.77"),
        ("truncated", "203.0.113.77", "203.0.113.0/24"),
        ("truncated", "2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("truncated", "::ffff:198.51.100.9", "198.51.100.0/24"),
        ("truncated", "testclient", None),
        ("hashed", None, None),
        ("full", "", None),
    ],
)
def test_client_addresses_follow_the_policy(policy: str, address: str | None, expected: str | None) -> None:
    assert ClientAddresses(AddressPolicy(policy), KEY)(address) == expected


def test_hashed_addresses_are_keyed_stable_and_unreadable() -> None:
    hashed = ClientAddresses(AddressPolicy.HASHED, KEY)
    first = hashed("203.0.113.77")
    assert first is not None
    assert first.startswith("hmac:")
    assert "203.0.113" not in first
    assert hashed("203.0.113.77") == first  # linkable within one key
    assert hashed("203.0.113.78") != first
    assert ClientAddresses(AddressPolicy.HASHED, b"x" * 32)("203.0.113.77") != first  # another key, another pseudonym
    assert hashed("::ffff:203.0.113.77") == first  # one address, one pseudonym
