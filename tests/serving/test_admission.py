"""Admission: rates with bursts, daily caps that survive restarts, and budgets shared through real Redis."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from limits.storage import MemoryStorage, RedisStorage

from tests.backends import BACKENDS, database_url
from warden.errors import QuotaExceeded, RateLimited, TooManyImages
from warden.serving.admission import Admission, DailyCounter, RedisDailyCounter, rate_item
from warden.storage import Database, Tenant
from warden.tenancy import Principal, Quota, Scope

REDIS_URL = "redis://127.0.0.1:6379/0"


def caller(tenant_id: int, **quota: object) -> Principal:
    return Principal(tenant_id, f"t{tenant_id}", "k", Scope.DETECT, "api_key", Quota(**quota))  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with database_url(request.param, tmp_path) as url:
        database = Database(url)
        database.migrate()
        with database.session() as session:
            session.add_all([Tenant(id=tenant_id, name=f"t{tenant_id}", status="active") for tenant_id in (1, 2)])
        yield database
        database.close()


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at 127.0.0.1:6379 ({exc}); Redis tests NOT run")
    return REDIS_URL


@pytest.mark.parametrize(
    ("quota", "amount", "seconds"),
    [
        (Quota(rps=5), 5, 1),
        (Quota(rps=5, burst=10), 10, 2),
        (Quota(rps=0.5), 1, 2),
        (Quota(rps=100, burst=1), 1, 1),
        (Quota(rps=2.5), 5, 2),
        (Quota(rps=0.3), 3, 10),
    ],
)
def test_rate_items_allow_the_burst_and_hold_the_average(quota: Quota, amount: int, seconds: int) -> None:
    item = rate_item(quota)
    assert item is not None
    assert (item.amount, item.get_expiry()) == (amount, seconds)


def test_no_rate_means_no_item() -> None:
    assert rate_item(Quota()) is None


def test_when_a_tenant_exceeds_its_burst_then_rate_limited_with_retry_after(db: Database) -> None:
    admission = Admission(MemoryStorage(), DailyCounter(db))
    limited = caller(1, rps=1, burst=2)
    admission.admit(limited)
    admission.admit(limited)
    with pytest.raises(RateLimited) as caught:
        admission.admit(limited)
    assert 0 < caught.value.retry_after <= 2
    admission.admit(caller(2, rps=1, burst=2))  # another tenant has its own budget
    admission.admit(caller(1))  # a quota without a rate is never limited
    admission.close()


def test_when_the_daily_cap_is_used_then_quota_exceeded_also_after_a_restart(db: Database) -> None:
    now = [1_795_000_000.0]
    first = Admission(MemoryStorage(), DailyCounter(db, clock=lambda: now[0]), clock=lambda: now[0])
    capped = caller(1, daily_requests=3)
    for _ in range(3):
        first.admit(capped)
    with pytest.raises(QuotaExceeded) as caught:
        first.admit(capped)
    assert 0 < caught.value.retry_after <= 86_400
    first.close()
    restarted = Admission(MemoryStorage(), DailyCounter(db, clock=lambda: now[0]), clock=lambda: now[0])
    with pytest.raises(QuotaExceeded):
        restarted.admit(capped)
    restarted.admit(caller(2, daily_requests=3))
    now[0] += 86_400  # a new UTC day
    restarted.admit(capped)
    restarted.close()


def test_a_rate_limited_request_does_not_use_the_daily_cap(db: Database) -> None:
    admission = Admission(MemoryStorage(), DailyCounter(db))
    both = caller(1, rps=1, burst=1, daily_requests=2)
    admission.admit(both)
    for _ in range(5):
        with pytest.raises(RateLimited):
            admission.admit(both)
    admission.close()
    counter = DailyCounter(db)
    assert counter.take(1, 2)  # one of the two left: the refused ones were not counted
    assert not counter.take(1, 2)
    counter.close()


def test_two_instances_on_redis_share_one_rate_and_one_daily_cap(redis_url: str) -> None:
    tenant = secrets.randbelow(10**9) + 1000
    first = Admission(RedisStorage(redis_url), RedisDailyCounter(redis_url))
    second = Admission(RedisStorage(redis_url), RedisDailyCounter(redis_url))
    limited = caller(tenant, rps=1, burst=4)
    admitted = 0
    for instance in (first, second) * 4:
        try:
            instance.admit(limited)
            admitted += 1
        except RateLimited:
            pass
    assert admitted == 4
    capped = caller(tenant + 1, daily_requests=5)
    taken = 0
    for instance in (first, second) * 5:
        try:
            instance.admit(capped)
            taken += 1
        except QuotaExceeded:
            pass
    assert taken == 5
    first.close()
    second.close()


def test_two_deployments_on_one_redis_with_different_prefixes_keep_separate_budgets(redis_url: str) -> None:
    tenant = secrets.randbelow(10**9) + 1000
    limited = caller(tenant, rps=1, burst=2, daily_requests=3)
    first = Admission.create(None, redis_url, redis_prefix=f"warden-a-{tenant}")  # type: ignore[arg-type]
    second = Admission.create(None, redis_url, redis_prefix=f"warden-b-{tenant}")  # type: ignore[arg-type]
    try:
        for admission in (first, second):  # the same tenant id, two budgets of 2
            admission.admit(limited)
            admission.admit(limited)
            with pytest.raises(RateLimited):
                admission.admit(limited)
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_request_of_several_images_pays_one_unit_per_image(
    backend: str, db: Database, request: pytest.FixtureRequest
) -> None:
    storage = MemoryStorage() if backend == "memory" else RedisStorage(request.getfixturevalue("redis_url"))
    admission = Admission(storage, DailyCounter(db))
    limited = caller(secrets.randbelow(10**9) + 1000, rps=0.01, burst=5)
    admission.admit(limited)
    admission.charge(limited, 3)  # a request of four images: four of the five units
    admission.admit(limited)  # a fifth request of one image still fits
    with pytest.raises(RateLimited) as caught:
        admission.admit(limited)
    assert caught.value.retry_after > 0
    admission.close()


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_charge_that_does_not_fit_counts_nothing(backend: str, db: Database, request: pytest.FixtureRequest) -> None:
    storage = MemoryStorage() if backend == "memory" else RedisStorage(request.getfixturevalue("redis_url"))
    admission = Admission(storage, DailyCounter(db))
    limited = caller(secrets.randbelow(10**9) + 1000, rps=0.01, burst=5)
    admission.admit(limited)
    admission.admit(limited)
    with pytest.raises(RateLimited):
        admission.charge(limited, 4)  # 2 + 4 > 5
    admission.charge(limited, 3)  # the refused four were not counted: 2 + 3 fits
    with pytest.raises(RateLimited):
        admission.admit(limited)
    admission.close()


@pytest.mark.parametrize(("images", "refused"), [(5, False), (6, True), (100, True)])
def test_more_images_than_the_burst_are_too_many_at_once(db: Database, images: int, refused: bool) -> None:
    admission = Admission(MemoryStorage(), DailyCounter(db))
    limited = caller(1, rps=1, burst=5)
    admission.admit(limited)
    if refused:
        with pytest.raises(TooManyImages, match="burst of 5"):
            admission.charge(limited, images - 1)
    else:
        admission.charge(limited, images - 1)
    admission.charge(caller(2), 1000)  # no rate: nothing to pay
    admission.close()
