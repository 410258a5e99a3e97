"""FreshCache: entries expire, a clear wins over a read taken before it, and a zero lifetime caches nothing."""

from __future__ import annotations

import pytest

from warden.caching import FreshCache


class Clock:
    """A hand-moved clock for the cache's timer."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_served_until_its_lifetime_ends() -> None:
    clock = Clock()
    cache: FreshCache[str, int] = FreshCache(1.0, timer=clock)
    cache.put("a", 1, cache.generation())
    clock.now = 0.999
    assert cache.get("a") == 1
    clock.now = 1.0
    assert cache.get("a") is None


def test_an_entry_expires_a_lifetime_after_its_read_began_not_after_it_was_stored() -> None:
    clock = Clock()
    cache: FreshCache[str, int] = FreshCache(1.0, timer=clock)
    token = cache.generation()  # the read starts at 0.0 ...
    clock.now = 0.4  # ... and is stored later, after another process may have changed the row
    cache.put("a", 1, token)
    clock.now = 0.999
    assert cache.get("a") == 1
    clock.now = 1.0
    assert cache.get("a") is None


def test_a_value_read_before_a_clear_is_not_kept() -> None:
    cache: FreshCache[str, int] = FreshCache(60.0)
    before = cache.generation()
    cache.clear()  # a change committed while the value was being read
    cache.put("a", 1, before)
    assert cache.get("a") is None
    cache.put("a", 2, cache.generation())
    assert cache.get("a") == 2


def test_a_clear_forgets_every_entry() -> None:
    cache: FreshCache[str, int] = FreshCache(60.0)
    for key in "abc":
        cache.put(key, 1, cache.generation())
    cache.clear()
    assert [cache.get(key) for key in "abc"] == [None, None, None]


def test_a_zero_lifetime_caches_nothing() -> None:
    cache: FreshCache[str, int] = FreshCache(0.0)
    cache.put("a", 1, cache.generation())
    assert cache.get("a") is None


@pytest.mark.parametrize("ttl", [-1.0, float("nan")])
def test_a_negative_or_undefined_lifetime_is_refused(ttl: float) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        FreshCache(ttl)
