"""The ``memory`` limiter with a ManualClock: exact GCRA values, lease expiry, window rollover,
and the window arithmetic it shares with the Redis script."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from gateway_limits import register_limiters
from gateway_limits.memory import MemoryLimiter
from gateway_limits.redis_limiter import RedisLimiter
from gateway_limits.windows import window_at

from gateway.clock import ManualClock
from gateway.governance.limiter import Limiter, LimiterFactory, Rule
from tests.unit.governance.limiter_support import START, Recorder, demand

pytestmark = pytest.mark.anyio
UTC = dt.UTC


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def make(clock: ManualClock, recorder: Recorder | None = None) -> MemoryLimiter:
    return MemoryLimiter(clock=clock, events=(recorder or Recorder()).events)


def test_the_plugin_registers_both() -> None:
    found: dict[str, LimiterFactory] = {}
    register_limiters(found.__setitem__)
    assert found == {"memory": MemoryLimiter, "redis": RedisLimiter}
    assert isinstance(MemoryLimiter(), Limiter)
    with pytest.raises(TypeError):
        MemoryLimiter(url="redis://x")  # type: ignore[call-arg]


async def test_gcra_exact_values() -> None:
    clock = ManualClock(start=START)
    limiter = make(clock)
    rpm = Rule("key:a", "requests", 4)
    grants = [await limiter.reserve(demand((rpm,))) for _ in range(5)]
    assert [(g.states[0].remaining, g.states[0].reset_s) for g in grants] == [
        (3, 15.0),
        (2, 30.0),
        (1, 45.0),
        (0, 60.0),
        (0, 60.0),
    ]
    assert grants[4].retry_after_s == 15.0
    clock.advance(14.5)
    assert (await limiter.reserve(demand((rpm,)))).retry_after_s == 0.5
    clock.advance(0.5)
    again = await limiter.reserve(demand((rpm,)))
    assert again.admitted
    assert again.states[0].remaining == 0
    clock.advance(60)
    assert (await limiter.states([rpm], "k:a"))[0].remaining == 4


async def test_token_debt_exact() -> None:
    clock = ManualClock(start=START)
    limiter = make(clock)
    tpm = Rule("key:a", "tokens", 100)  # T = 0.6 s
    grant = await limiter.reserve(demand((tpm,), tokens=1000))  # clamped to 100
    assert grant.reservation is not None
    assert grant.states[0].remaining == 0
    limiter.settle(grant.reservation, 1000, 0)  # 900 over: 540 s of debt
    (state,) = await limiter.states([tpm], "k:a")
    assert state.reset_s == pytest.approx(600.0)
    owed = await limiter.reserve(demand((tpm,), tokens=10))
    assert owed.retry_after_s == pytest.approx(546.0)
    clock.advance(546)
    assert (await limiter.reserve(demand((tpm,), tokens=10))).admitted


async def test_a_refund_never_moves_the_bucket_before_now() -> None:
    clock = ManualClock(start=START)
    limiter = make(clock)
    tpm = Rule("key:a", "tokens", 60)
    grant = await limiter.reserve(demand((tpm,), tokens=30))
    assert grant.reservation is not None
    clock.advance(120)
    limiter.settle(grant.reservation, 0, 0)
    assert (await limiter.states([tpm], "k:a"))[0].remaining == 60
    assert (await limiter.reserve(demand((tpm,), tokens=60))).admitted


async def test_lease_expiry_exact() -> None:
    clock = ManualClock(start=START)
    limiter = make(clock)
    par = Rule("key:a", "parallel", 1)
    assert (await limiter.reserve(demand((par,), lease_s=30))).admitted
    clock.advance(29.9)
    assert not (await limiter.reserve(demand((par,)))).admitted
    clock.advance(0.1)
    assert (await limiter.reserve(demand((par,)))).admitted


async def test_budget_windows_roll_over_and_settle_where_reserved() -> None:
    clock = ManualClock(start=at(2027, 1, 31, 23, 59, 50))
    recorder = Recorder()
    limiter = make(clock, recorder)
    month = Rule("key:a", "budget", 100, "month", (1.0,))
    grant = await limiter.reserve(demand((month,), cost=100))
    assert grant.reservation is not None
    assert grant.reservation.windows == ("2027-01",)
    assert grant.states[0].reset_s == 10.0
    refused = await limiter.reserve(demand((month,), cost=1))
    assert refused.denied == month
    assert refused.retry_after_s == 10.0
    clock.advance(20)  # February: a fresh window
    (state,) = await limiter.states([month], "k:a")
    assert state.remaining == 100
    assert state.reset_s == at(2027, 3, 1) - clock.time()
    limiter.settle(grant.reservation, 0, 100)  # charged to January, where it was reserved
    assert [(a.window, a.spent) for a in recorder.alerts] == [("2027-01", 100)]
    assert (await limiter.states([month], "k:a"))[0].used == 0
    assert (await limiter.reserve(demand((month,), cost=100))).admitted


async def test_duration_windows_are_fixed_from_the_epoch() -> None:
    clock = ManualClock(start=6 * 3600 * 1000 + 3600.0)
    limiter = make(clock)
    six = Rule("key:a", "budget", 10, "6h")
    grant = await limiter.reserve(demand((six,), cost=10))
    assert grant.reservation is not None
    assert grant.reservation.windows == ("1000",)
    assert grant.states[0].reset_s == 5 * 3600


async def test_sweep_forgets_only_what_limits_nothing() -> None:
    clock = ManualClock(start=START)
    limiter = make(clock)
    rules = (Rule("key:a", "requests", 1), Rule("key:a", "budget", 10, "day"))
    grant = await limiter.reserve(demand(rules, cost=5))
    limiter.sweep()
    assert (await limiter.states(rules, "k:a"))[0].remaining == 0
    clock.advance(3 * 86_400)
    limiter.sweep()  # the old window still holds 5: kept until settled
    assert grant.reservation is not None
    limiter.settle(grant.reservation, 0, 5)
    limiter.sweep()
    assert limiter._tat == {}
    assert limiter._windows == {}
    await limiter.start()
    await limiter.aclose()


def expected_window(window: str, now: float) -> tuple[str, float]:
    """The windows by the datetime module, to check the integer arithmetic."""
    t = dt.datetime.fromtimestamp(now, UTC)
    day = dt.datetime(t.year, t.month, t.day, tzinfo=UTC)
    if window == "day":
        return day.strftime("%Y-%m-%d"), (day + dt.timedelta(days=1)).timestamp()
    if window == "week":
        monday = day - dt.timedelta(days=day.weekday())
        return monday.strftime("%Y-%m-%d"), (monday + dt.timedelta(days=7)).timestamp()
    first = dt.datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
    return f"{t.year:04d}-{t.month:02d}", first.timestamp()


def test_window_arithmetic_matches_the_calendar() -> None:
    rng = random.Random(7)
    moments = [at(2024, 2, 29, 12), at(2026, 12, 31, 23, 59, 59), at(2027, 1, 4), 0.0]
    moments += [rng.uniform(0, 4_102_444_800) for _ in range(2000)]  # to 2100
    for now in moments:
        for window in ("day", "week", "month"):
            assert window_at(window, now) == expected_window(window, now), (window, now)
    assert window_at("30m", 3600.0) == ("2", 5400.0)
    with pytest.raises(ValueError, match="invalid budget window"):
        window_at("fortnight", 0.0)
