"""Usage from the audit trail: requests fall in the bucket of their time, refusals by code, latency of successes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from warden.audit import AuditEvent
from warden.audit.events import EventKind
from warden.audit.usage import usage
from warden.errors import InvalidArgument
from warden.services import Services

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


DETECT = "POST /v1/models/{name}/detect"


def record(
    services: Services,
    seconds: float,
    tenant: str | None,
    status: int,
    code: str | None,
    ms: float,
    route: str = DETECT,
) -> None:
    event = AuditEvent(
        kind=EventKind.REQUEST,
        time=T0 + timedelta(seconds=seconds),
        tenant=tenant,
        route=route,
        status=status,
        error_code=code,
        total_ms=ms,
    )
    services.audit.record(event)


def test_requests_are_counted_in_their_bucket_by_tenant_and_outcome(services: Services) -> None:
    for seconds, tenant, status, code, ms in [
        (0, "a", 200, None, 10.0),
        (59.9, "a", 200, None, 30.0),
        (60, "a", 429, "rate_limited", 0.1),
        (61, "a", 429, "rate_limited", 0.1),
        (62, "a", 404, "model_not_found", 0.5),
        (90, "b", 200, None, 5.0),
        (10, None, 401, "unauthenticated", 0.2),  # no tenant: not any tenant's usage
        (180, "a", 200, None, 1.0),  # after the window
        (-1, "a", 200, None, 1.0),  # before it
    ]:
        record(services, seconds, tenant, status, code, ms)
    for route in ("GET /v1/usage", "GET /admin/audit", "GET /v1/models"):  # reading is not usage
        record(services, 1, "a", 200, None, 900.0, route)
    record(services, 2, "b", 200, None, 7.0, "POST /v2/models/{name}/infer")
    assert services.audit.flush(timeout=30)
    found = usage(services.db, since=T0, until=T0 + timedelta(seconds=120), bucket_seconds=60)
    result = found.to_dict()
    assert set(result["tenants"]) == {"a", "b"}
    first, second = result["tenants"]["a"]
    assert (first["requests"], first["ok"], first["refusals"]) == (2, 2, {})
    assert first["p50_ms"] == 20.0
    assert (second["requests"], second["ok"]) == (3, 0)
    assert second["refusals"] == {"model_not_found": 1, "rate_limited": 2}
    assert second["p50_ms"] is None
    assert [bucket["requests"] for bucket in result["tenants"]["b"]] == [1, 1]
    only_b = usage(services.db, since=T0, until=T0 + timedelta(seconds=120), bucket_seconds=60, tenant="b")
    assert set(only_b.tenants) == {"b"}
    idle = usage(services.db, since=T0, until=T0 + timedelta(seconds=120), bucket_seconds=60, tenant="idle")
    assert [bucket.requests for bucket in idle.tenants["idle"]] == [0, 0]


@pytest.mark.parametrize(
    ("seconds", "bucket", "message"),
    [(60, 0, "bucket_seconds"), (0, 60, "until must be after"), (86_400 * 2, 60, "at most")],
)
def test_a_bad_window_is_refused(services: Services, seconds: int, bucket: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        usage(services.db, since=T0, until=T0 + timedelta(seconds=seconds), bucket_seconds=bucket)


def test_past_the_record_cap_the_newest_records_are_counted_and_the_answer_says_truncated(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seconds in range(10):
        record(services, seconds * 10, "a", 200, None, 1.0)
    assert services.audit.flush(timeout=30)
    monkeypatch.setattr("warden.audit.usage.MAX_RECORDS", 4)
    found = usage(services.db, since=T0, until=T0 + timedelta(seconds=100), bucket_seconds=10)
    assert found.truncated
    # The newest four, and the one at the cut's time.
    assert [bucket.requests for bucket in found.tenants["a"]] == [0] * 5 + [1] * 5
    monkeypatch.setattr("warden.audit.usage.MAX_RECORDS", 10)
    assert not usage(services.db, since=T0, until=T0 + timedelta(seconds=100), bucket_seconds=10).truncated
