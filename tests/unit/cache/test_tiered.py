"""The tiered cache (gateway.cache.tiered) over fake tiers and a manual clock: lookups in order,
promotion with the remaining TTL, expiry, and a failing tier skipped, then retried."""

from __future__ import annotations

import pytest

from gateway.cache.tiered import TieredCache
from gateway.clock import ManualClock

pytestmark = pytest.mark.anyio


class FakeTier:
    """A dict with the CacheBackend contract; ``failing`` makes every call raise."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[bytes, float]] = {}
        self.calls = 0
        self.failing = False
        self.closed = False

    def _call(self) -> None:
        self.calls += 1
        if self.failing:
            raise ConnectionError("tier down")

    async def get(self, key: str) -> bytes | None:
        self._call()
        item = self.items.get(key)
        return item[0] if item else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._call()
        self.items[key] = (value, ttl_s)

    async def delete(self, key: str) -> None:
        self._call()
        self.items.pop(key, None)

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def tiers() -> tuple[FakeTier, FakeTier]:
    return FakeTier(), FakeTier()


def cache_over(
    tiers: tuple[FakeTier, FakeTier], clock: ManualClock, errors: list[str] | None = None
) -> TieredCache:
    on_error = errors.append if errors is not None else None
    return TieredCache(
        [("memory", tiers[0]), ("redis", tiers[1])], 2.0, on_error=on_error, clock=clock
    )


async def test_set_stores_in_every_tier_and_get_reads_the_first(
    tiers: tuple[FakeTier, FakeTier], clock: ManualClock
) -> None:
    cache = cache_over(tiers, clock)
    await cache.set("k", b"body", 60)
    assert set(tiers[0].items) == set(tiers[1].items) == {"k"}
    assert tiers[0].items["k"][1] == 60
    found = await cache.get("k")
    assert found is not None
    entry, tier = found
    assert (entry.body, entry.ttl_s, tier) == (b"body", 60, "memory")
    assert tiers[1].calls == 1  # the lower tier was not asked
    assert await cache.get("missing") is None


async def test_a_lower_hit_is_promoted_for_its_remaining_ttl(
    tiers: tuple[FakeTier, FakeTier], clock: ManualClock
) -> None:
    cache = cache_over(tiers, clock)
    await cache.set("k", b"body", 60)
    del tiers[0].items["k"]  # evicted from memory, still in Redis
    clock.advance(20)
    found = await cache.get("k")
    assert found is not None
    assert found[1] == "redis"
    assert cache.age_of(found[0]) == 20
    value, ttl = tiers[0].items["k"]
    assert ttl == pytest.approx(40)
    assert value == tiers[1].items["k"][0]
    found = await cache.get("k")
    assert found is not None
    assert found[1] == "memory"


async def test_expired_entries_are_misses_whatever_a_tier_returns(
    tiers: tuple[FakeTier, FakeTier], clock: ManualClock
) -> None:
    cache = cache_over(tiers, clock)
    await cache.set("k", b"body", 10)
    clock.advance(9)
    assert await cache.get("k") is not None
    clock.advance(1)
    assert await cache.get("k") is None


async def test_a_failing_tier_is_skipped_for_retry_after_then_retried(
    tiers: tuple[FakeTier, FakeTier], clock: ManualClock
) -> None:
    errors: list[str] = []
    memory, redis = tiers
    cache = cache_over(tiers, clock, errors)
    await cache.set("k", b"body", 60)
    del memory.items["k"]
    redis.failing = True
    assert await cache.get("k") is None  # fails open: a miss, no exception
    assert errors == ["redis"]
    calls = redis.calls
    await cache.set("other", b"x", 60)
    assert await cache.get("k") is None
    assert redis.calls == calls  # skipped while down
    assert "other" in memory.items
    assert "other" not in redis.items
    clock.advance(1.9)
    assert await cache.get("k") is None
    assert redis.calls == calls
    redis.failing = False
    clock.advance(0.1)  # retry_after_s passed: the tier is tried again
    found = await cache.get("k")
    assert found is not None
    assert found[1] == "redis"
    assert redis.calls == calls + 1
    assert errors == ["redis"]


async def test_a_failing_upper_tier_does_not_hide_the_lower(
    tiers: tuple[FakeTier, FakeTier], clock: ManualClock
) -> None:
    errors: list[str] = []
    cache = cache_over(tiers, clock, errors)
    await cache.set("k", b"body", 60)
    tiers[0].failing = True
    found = await cache.get("k")
    assert found is not None
    assert found[1] == "redis"
    assert errors == ["memory"]


async def test_aclose_closes_every_tier(
    tiers: tuple[FakeTier, FakeTier], clock: ManualClock
) -> None:
    await cache_over(tiers, clock).aclose()
    assert tiers[0].closed
    assert tiers[1].closed
