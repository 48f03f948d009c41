"""The two built-ins agree exactly: the same random run of reservations, settlements and clock
moves gives the same grants, states and alerts from ``memory`` (ManualClock) and from ``redis``
(its script, with Redis's clock swapped for the test's, read from a key)."""

from __future__ import annotations

import random

import pytest
from gateway_limits import script
from gateway_limits.connection import Script
from gateway_limits.memory import MemoryLimiter
from gateway_limits.redis_limiter import RedisLimiter

from gateway.clock import ManualClock
from gateway.governance.limiter import Grant, Reservation, Rule, RuleState
from tests.support.redis_server import RedisServer
from tests.unit.governance.limiter_support import START, Recorder, demand, redis_server

__all__ = ["redis_server"]  # a fixture
pytestmark = pytest.mark.anyio

CLOCK_KEY = "parity:now"
_TIME = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) + tonumber(t[2]) / 1000000"
RULES = (
    Rule("key:a", "requests", 3),
    Rule("key:a", "tokens", 700),
    Rule("key:a", "parallel", 2),
    Rule("key:a", "budget", 5000, "day", (0.5, 0.9, 1.0)),
    Rule("tenant:t", "requests", 12),
    Rule("tenant:t", "tokens", 2000),
    Rule("tenant:t", "budget", 20_000, "month", (0.25, 0.75)),
    Rule("tenant:t", "budget", 3000, "6h", (1.0,)),
)


def on_test_clock(source: str) -> Script:
    assert _TIME in source
    return Script(source.replace(_TIME, f"local now = tonumber(redis.call('GET', '{CLOCK_KEY}'))"))


def same_states(a: tuple[RuleState, ...], b: tuple[RuleState, ...]) -> None:
    assert [(s.rule, s.remaining, s.used) for s in a] == [(s.rule, s.remaining, s.used) for s in b]
    for x, y in zip(a, b, strict=True):
        assert x.reset_s == pytest.approx(y.reset_s, abs=1e-6)


def same_grants(a: Grant, b: Grant) -> None:
    assert (a.admitted, a.denied) == (b.admitted, b.denied)
    assert a.retry_after_s == pytest.approx(b.retry_after_s, abs=1e-6)
    same_states(a.states, b.states)
    if a.reservation is not None and b.reservation is not None:
        assert a.reservation.windows == b.reservation.windows


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_memory_and_redis_agree(redis_server: RedisServer, seed: int) -> None:
    rng = random.Random(seed)
    clock = ManualClock(start=START - 3 * 3600 - rng.uniform(0, 3600))
    mem_events, red_events = Recorder(), Recorder()
    memory = MemoryLimiter(clock=clock, events=mem_events.events)
    redis_limiter = RedisLimiter(
        url=redis_server.url, prefix=f"parity{seed}", events=red_events.events
    )
    redis_limiter._reserve = on_test_clock(script.RESERVE)
    redis_limiter._states = on_test_clock(script.STATES)
    sync = redis_limiter._client
    open_: list[tuple[Reservation, Reservation]] = []
    seen: set[str] = set()  # what the run covered
    try:
        for _ in range(400):
            await sync.set(CLOCK_KEY, repr(clock.time()))
            roll = rng.random()
            if roll < 0.5:
                rules = tuple(r for r in RULES if rng.random() < 0.5) or RULES[:1]
                tokens = rng.choice([0, 1, 50, 300, 900, 3000])
                cost = rng.choice([0, 10, 400, 1500, 6000])
                d = demand(rules, tokens=tokens, cost=cost, lease_s=rng.choice([5.0, 900.0]))
                a, b = await memory.reserve(d), await redis_limiter.reserve(d)
                same_grants(a, b)
                seen.add(a.denied.kind if a.denied else "admitted")
                if a.reservation is not None and b.reservation is not None:
                    open_.append((a.reservation, b.reservation))
            elif roll < 0.75 and open_:
                ra, rb = open_.pop(rng.randrange(len(open_)))
                tokens = rng.choice([0, ra.tokens // 2, ra.tokens, ra.tokens * 3])
                cost = rng.choice([0, ra.demand.cost // 3, ra.demand.cost, ra.demand.cost + 700])
                memory.settle(ra, tokens, cost)
                redis_limiter.settle(rb, tokens, cost)
                assert await redis_limiter.flush(force=True)
            elif roll < 0.9:
                same_states(
                    tuple(await memory.states(RULES, "k:a")),
                    tuple(await redis_limiter.states(RULES, "k:a")),
                )
            else:
                clock.advance(rng.choice([0.5, 3.0, 12.0, 61.0, 2 * 3600.0]))
        for name in ("key:a", "tenant:t"):
            assert memory.budget_used(name) == pytest.approx(redis_limiter.budget_used(name))
        assert seen == {"admitted", "requests", "tokens", "parallel", "budget"}
        assert mem_events.alerts
        fired = [(a.rule, a.window, a.threshold, a.spent) for a in mem_events.alerts]
        assert fired == [(a.rule, a.window, a.threshold, a.spent) for a in red_events.alerts]
    finally:
        await redis_limiter.aclose()
