"""What both built-in limiters do alike (``memory`` on a ManualClock, ``redis`` on a real
server, Redis's clock): the semantics of :mod:`gateway.governance.limiter`. Values that depend
on Redis's moving clock are checked within bounds; exact ones are in test_limiter_memory."""

from __future__ import annotations

import math

import anyio
import pytest

from gateway.governance.limiter import Limiter, Rule
from tests.unit.governance.limiter_support import Harness, Recorder, demand, harness, redis_server

__all__ = ["harness", "redis_server"]  # fixtures
pytestmark = pytest.mark.anyio

RPM = Rule("key:a", "requests", 4)
TPM = Rule("tenant:t", "tokens", 600)
PAR = Rule("key:a", "parallel", 2)
BUDGET = Rule("tenant:t", "budget", 1000, "day", (0.5, 0.8, 1.0))


async def remaining(limiter: Limiter, *rules: Rule, tag: str = "k:a") -> list[int]:
    return [s.remaining for s in await limiter.states(rules, tag)]


async def test_untouched_rules_are_full(harness: Harness) -> None:
    limiter = harness.make()
    states = await limiter.states([RPM, TPM, PAR, BUDGET], "k:a")
    assert [s.rule for s in states] == [RPM, TPM, PAR, BUDGET]
    assert [s.remaining for s in states] == [4, 600, 2, 1000]
    assert [s.reset_s for s in states[:3]] == [0, 0, 0]
    assert 0 < states[3].reset_s <= 86_400
    assert states[3].used == 0
    assert limiter.budget_used("tenant:t") == 0.0
    assert limiter.budget_used("key:nobody") is None


async def test_all_or_nothing_over_rules_and_scopes(harness: Harness) -> None:
    limiter = harness.make()
    rules = (RPM, TPM, PAR, BUDGET)
    first = await limiter.reserve(demand(rules, tokens=400, cost=300))
    assert first.admitted
    assert first.denied is None
    assert [s.remaining for s in first.states] == [3, 200, 1, 700]
    # the tenant's tokens refuse: nothing of the key's requests, slots or the budget is taken
    refused = await limiter.reserve(demand(rules, tokens=400, cost=300))
    assert not refused.admitted
    assert refused.denied == TPM
    assert [s.remaining for s in refused.states] == [3, 200, 1, 700]
    assert await remaining(limiter, *rules) == [3, 200, 1, 700]
    # the budget refuses (the first refusing rule is reported)
    broke = await limiter.reserve(demand(rules, tokens=10, cost=701))
    assert broke.denied == BUDGET
    assert broke.reservation is None
    assert await remaining(limiter, *rules) == [3, 200, 1, 700]


async def test_gcra_bursts_a_minute_then_spaces(harness: Harness) -> None:
    limiter = harness.make()
    grants = [await limiter.reserve(demand((RPM,))) for _ in range(5)]
    assert [g.admitted for g in grants] == [True, True, True, True, False]
    assert [g.states[0].remaining for g in grants] == [3, 2, 1, 0, 0]
    resets = [g.states[0].reset_s for g in grants[:4]]
    for reset, expected in zip(resets, (15, 30, 45, 60), strict=True):
        assert expected - 1 < reset <= expected
    assert grants[4].denied == RPM
    assert 14 < grants[4].retry_after_s <= 15  # one emission interval (60 s / 4)


async def test_retry_after_is_the_longest_refusal(harness: Harness) -> None:
    limiter = harness.make()
    slow = Rule("key:a", "requests", 1)
    fast = Rule("tenant:t", "requests", 60)
    assert (await limiter.reserve(demand((fast, slow)))).admitted
    refused = await limiter.reserve(demand((fast, slow)))
    assert refused.denied == slow
    assert 59 < refused.retry_after_s <= 60


async def test_tokens_are_refunded_and_overage_is_debt(harness: Harness) -> None:
    limiter = harness.make()
    grant = await limiter.reserve(demand((TPM,), tokens=400))
    assert grant.reservation is not None
    assert grant.states[0].remaining == 200
    limiter.settle(grant.reservation, 100, 0)  # 300 unused: given back
    await harness.settled()
    assert await remaining(limiter, TPM) == [500]
    big = await limiter.reserve(demand((TPM,), tokens=500))
    assert big.reservation is not None
    assert big.states[0].remaining == 0
    limiter.settle(big.reservation, 1100, 0)  # 600 over: the bucket owes a minute
    await harness.settled()
    (state,) = await limiter.states([TPM], "k:a")
    assert state.remaining == 0
    assert 119 < state.reset_s <= 120
    owed = await limiter.reserve(demand((TPM,), tokens=1))
    assert owed.denied == TPM
    assert 60 < owed.retry_after_s <= 60.1


async def test_a_demand_above_the_limit_is_clamped(harness: Harness) -> None:
    limiter = harness.make()
    grant = await limiter.reserve(demand((TPM,), tokens=5000))
    assert grant.admitted
    assert grant.states[0].remaining == 0
    again = await limiter.reserve(demand((TPM,), tokens=5000))
    assert again.denied == TPM
    assert 59 < again.retry_after_s <= 60


async def test_parallel_leases(harness: Harness) -> None:
    limiter = harness.make()
    a = await limiter.reserve(demand((PAR,)))
    b = await limiter.reserve(demand((PAR,)))
    assert [a.states[0].remaining, b.states[0].remaining] == [1, 0]
    full = await limiter.reserve(demand((PAR,)))
    assert full.denied == PAR
    assert full.retry_after_s == 1.0
    assert full.states[0].reset_s == 0
    assert a.reservation is not None
    limiter.settle(a.reservation, 0, 0)
    await harness.settled()
    assert (await limiter.reserve(demand((PAR,)))).admitted


async def test_a_lease_never_settled_expires(harness: Harness) -> None:
    limiter = harness.make()
    assert (await limiter.reserve(demand((PAR,), lease_s=0.05))).admitted
    assert (await limiter.reserve(demand((PAR,), lease_s=0.05))).admitted
    assert not (await limiter.reserve(demand((PAR,)))).admitted
    harness.clock.advance(0.1)
    if harness.kind == "redis":
        for _ in range(100):  # Redis's clock: wait (bounded) until the leases lapse
            if (await remaining(limiter, PAR)) == [2]:
                break
            await anyio.sleep(0.02)
    assert (await limiter.reserve(demand((PAR,)))).admitted


async def test_no_overspend_under_concurrency(harness: Harness) -> None:
    limiter = harness.make()
    budget = Rule("tenant:t", "budget", 100, "month")
    grants = []

    async def one() -> None:
        grants.append(await limiter.reserve(demand((budget,), cost=7)))

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(one)
    admitted = [g for g in grants if g.admitted]
    assert len(admitted) * 7 <= 100
    assert len(admitted) == 14
    refused = next(g for g in grants if not g.admitted)
    assert refused.denied == budget
    assert refused.states[0].remaining == 2
    assert 0 < refused.retry_after_s <= 31 * 86_400  # the window's end
    assert limiter.budget_used("tenant:t") == pytest.approx(0.98)


async def test_budget_settles_spent_and_held(harness: Harness) -> None:
    limiter = harness.make()
    grant = await limiter.reserve(demand((BUDGET,), cost=300))
    assert grant.reservation is not None
    assert len(grant.reservation.windows) == 1
    assert grant.states[0].used == 0
    assert grant.states[0].remaining == 700
    assert limiter.budget_used("tenant:t") == pytest.approx(0.3)
    limiter.settle(grant.reservation, 0, 200)
    await harness.settled()
    (state,) = await limiter.states([BUDGET], "k:a")
    assert state.used == 200
    assert state.remaining == 800
    assert limiter.budget_used("tenant:t") == pytest.approx(0.2)


async def test_alerts_fire_once_per_threshold(harness: Harness) -> None:
    recorder = Recorder()
    limiter = harness.make(recorder)
    for cost in (300, 300, 300, 100, 50, 0):
        grant = await limiter.reserve(demand((BUDGET,), cost=cost))
        if grant.reservation is None:  # the budget is full: nothing more is spent
            break
        limiter.settle(grant.reservation, 0, cost)
        await harness.settled()
    fired = [(a.threshold, a.spent, a.limit, a.rule) for a in recorder.alerts]
    assert fired == [(0.5, 600, 1000, BUDGET), (0.8, 900, 1000, BUDGET), (1.0, 1000, 1000, BUDGET)]
    assert len({a.window for a in recorder.alerts}) == 1


async def test_requests_rules_need_no_settlement(harness: Harness) -> None:
    limiter = harness.make()
    grant = await limiter.reserve(demand((RPM,)))
    assert grant.reservation is not None
    assert grant.reservation.windows == ()
    limiter.settle(grant.reservation, 10, 10)
    await harness.settled()
    assert await remaining(limiter, RPM) == [3]
    assert math.isfinite(grant.retry_after_s)
