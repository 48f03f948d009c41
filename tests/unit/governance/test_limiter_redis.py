"""What is particular to the ``redis`` limiter, on real redis-servers: its keys and scripts, two
instances acting as two replicas, one call per request, and outages (fail closed, fail open)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis
from gateway_limits import script
from gateway_limits.redis_limiter import RedisLimiter

from gateway.governance.limiter import Grant, Limiter, LimiterUnavailableError, Rule
from tests.support.redis_server import RedisServer, running_redis
from tests.unit.governance.limiter_support import Recorder, demand, redis_server
from tests.unit.governance.test_limiter_memory import at, expected_window

__all__ = ["redis_server"]  # a fixture
pytestmark = pytest.mark.anyio


class Opener:
    """Opens RedisLimiters on one server and prefix; closes them at the end of the test."""

    def __init__(self, server: RedisServer, prefix: str) -> None:
        self.server, self.prefix, self.opened = server, prefix, list[RedisLimiter]()

    def __call__(self, recorder: Recorder | None = None, **options: Any) -> RedisLimiter:
        options.setdefault("prefix", self.prefix)
        limiter = RedisLimiter(
            url=self.server.url, events=(recorder or Recorder()).events, **options
        )
        self.opened.append(limiter)
        return limiter


@pytest.fixture
async def open_limiter(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> AsyncIterator[Opener]:
    opener = Opener(redis_server, f"r-{request.node.name}")
    yield opener
    for limiter in opener.opened:
        await limiter.aclose()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, to stop and start."""
    with running_redis() as server:
        yield server


def sync_client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True, driver_info=None)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="url"):
        RedisLimiter(url="http://x")
    with pytest.raises(ValueError, match="on_error"):
        RedisLimiter(url="redis://x", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="replicas"):
        RedisLimiter(url="redis://x", replicas=0)
    with pytest.raises(TypeError, match="timeout_s"):
        RedisLimiter(url="redis://x", timeout_s="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flush_interval_s"):
        RedisLimiter(url="redis://x", flush_interval_s=0)
    with pytest.raises(TypeError, match="cluster"):
        RedisLimiter(url="redis://x", cluster="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prefix"):
        RedisLimiter(url="redis://x", prefix="")
    with pytest.raises(TypeError):
        RedisLimiter(url="redis://x", colour="red")  # type: ignore[call-arg]
    assert isinstance(RedisLimiter(url="redis://x"), Limiter)


async def test_keys_share_the_tag_and_expire(open_limiter: Opener) -> None:
    limiter = open_limiter(prefix="kx")
    rules = (
        Rule("key:a", "requests", 5),
        Rule("key:a|model:m", "tokens", 100),
        Rule("tenant:t", "parallel", 3),
        Rule("tenant:t", "budget", 100, "week"),
    )
    grant = await limiter.reserve(demand(rules, tag="t:t", tokens=10, cost=5))
    assert grant.reservation is not None
    (week,) = grant.reservation.windows
    sync = sync_client(open_limiter.server)
    keys = sorted(sync.keys("kx:*"))
    assert keys == [
        "kx:{t:t}:key:a#requests",
        "kx:{t:t}:key:a|model:m#tokens",
        "kx:{t:t}:tenant:t#budget:week:" + week,
        "kx:{t:t}:tenant:t#parallel",
    ]
    assert all(sync.pttl(k) > 0 for k in keys)
    assert sync.pttl(keys[2]) > 86_400_000  # a day after the window's end
    sync.close()


async def test_the_lua_windows_match_the_calendar(redis_server: RedisServer) -> None:
    probe = script._COMMON + (
        "now = tonumber(ARGV[1]) local id, e = window_at(ARGV[2]) return {id, fmt(e)}"
    )
    sync = sync_client(redis_server)
    moments = [at(2024, 2, 29, 12), at(2026, 12, 31, 23, 59, 59), at(2027, 1, 4), 1.5e9, 4e9]
    for now in moments:
        for window in ("day", "week", "month"):
            wid, end = sync.eval(probe, 0, repr(now), window)
            assert (wid, float(end)) == expected_window(window, now)
    wid, end = sync.eval(probe, 0, "3600.0", "1800")
    assert (wid, float(end)) == ("2", 5400.0)
    sync.close()


async def gather(
    limiters: list[RedisLimiter], rules: tuple[Rule, ...], n: int, **kw: Any
) -> list[Grant]:
    grants: list[Grant] = []

    async def one(limiter: RedisLimiter) -> None:
        grants.append(await limiter.reserve(demand(rules, **kw)))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, limiters[i % len(limiters)])
    return grants


async def test_two_replicas_share_a_rate_limit_exactly(open_limiter: Opener) -> None:
    a, b = open_limiter(), open_limiter()
    rpm = Rule("key:a", "requests", 10)  # one every 6 s: none frees during the test
    grants = await gather([a, b], (rpm,), 200)
    assert sum(g.admitted for g in grants) == 10


async def test_two_replicas_never_overspend_a_budget(open_limiter: Opener) -> None:
    a, b = open_limiter(), open_limiter()
    budget = Rule("tenant:t", "budget", 100, "day")
    grants = await gather([a, b], (budget,), 100, cost=7)
    assert sum(7 for g in grants if g.admitted) == 98


async def test_two_replicas_alert_once_per_threshold(open_limiter: Opener) -> None:
    ra, rb = Recorder(), Recorder()
    a, b = open_limiter(ra), open_limiter(rb)
    budget = Rule("tenant:t", "budget", 1000, "day", (0.25, 0.5, 0.75, 1.0))
    grants = await gather([a, b], (budget,), 20, cost=50)
    for i, grant in enumerate(grants):
        assert grant.reservation is not None
        (a if i % 2 else b).settle(grant.reservation, 0, 50)
    await anyio.lowlevel.checkpoint()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.flush)
        tg.start_soon(b.flush)
    assert await a.flush(force=True)
    assert await b.flush(force=True)
    fired = sorted(x.threshold for x in ra.alerts + rb.alerts)
    assert fired == [0.25, 0.5, 0.75, 1.0]
    assert a.budget_used("tenant:t") == 1.0 or b.budget_used("tenant:t") == 1.0


# What the scripts call inside themselves (INFO commandstats counts those too): not round trips.
IN_SCRIPTS = {
    f"cmdstat_{c}"
    for c in [
        "time",
        "get",
        "set",
        "pexpire",
        "pttl",
        "zadd",
        "zrem",
        "zcard",
        "zcount",
        "zremrangebyscore",
        "hmget",
        "hget",
        "hset",
        "hsetnx",
        "hincrby",
    ]
}


def server_calls(sync: redis.Redis) -> int:
    """Commands clients sent since the last CONFIG RESETSTAT (this test's own left out)."""
    stats: dict[str, dict[str, int]] = sync.info("commandstats")
    skip = {"cmdstat_info", "cmdstat_config|resetstat", *IN_SCRIPTS}
    return sum(v["calls"] for k, v in stats.items() if k not in skip)


async def test_one_call_per_request_settlements_ride_along(open_limiter: Opener) -> None:
    limiter = open_limiter()  # not started: no heartbeat, no flusher; aclose flushes
    rules = (
        Rule("key:a", "requests", 1000),
        Rule("key:a", "tokens", 100_000),
        Rule("key:a", "parallel", 5),
        Rule("key:a", "budget", 10**9, "day"),
    )
    warm = await limiter.reserve(demand(rules, tag="warm", tokens=1, cost=1))  # loads the script
    assert warm.reservation is not None
    limiter.settle(warm.reservation, 1, 1)
    assert await limiter.flush(force=True)
    sync = sync_client(open_limiter.server)
    sync.config_resetstat()
    made = sum(limiter.calls.values())
    for i in range(60):
        grant = await limiter.reserve(demand(rules, tag=f"tag{i % 2}", tokens=10, cost=10))
        assert grant.reservation is not None
        limiter.settle(grant.reservation, 5, 5)  # rides with the next reserve (any tag)
    await limiter.aclose()  # the last settlement: one flush call
    calls = server_calls(sync)
    assert calls == sum(limiter.calls.values()) - made
    assert limiter.calls["flush"] == 1 + 1
    assert calls <= 60 + 1  # reserves + flushes
    (state,) = await open_limiter().states([rules[3]], "tag0")
    assert state.used == 30 * 5
    sync.close()


async def test_settlements_batch(open_limiter: Opener) -> None:
    limiter = open_limiter()
    par = Rule("key:a", "parallel", 1000)
    grants = await gather([limiter], (par,), 300, tag="b")
    grants += await gather([limiter], (par,), 10, tag="c")
    for grant in grants:
        assert grant.reservation is not None
        limiter.settle(grant.reservation, 0, 0)
    assert await limiter.flush(force=True)  # one Redis: 256 of any tag a call (the Cluster's
    assert limiter.calls["flush"] == 2  # batches per tag: test_limiter_cluster)
    assert limiter._pending.count == 0
    assert [s.remaining for s in await limiter.states([par], "b")] == [1000]


async def test_the_flusher_sends_what_no_reservation_carried(open_limiter: Opener) -> None:
    recorder = Recorder()
    limiter = open_limiter(recorder, flush_interval_s=0.01)
    await limiter.start()
    par = Rule("key:a", "parallel", 1)
    grant = await limiter.reserve(demand((par,)))
    assert grant.reservation is not None
    limiter.settle(grant.reservation, 0, 0)
    for _ in range(200):  # bounded: the flush loop frees the slot in the background
        if limiter.calls["flush"] and limiter._pending.count == 0:
            break
        await anyio.sleep(0.01)
    assert limiter.calls["flush"] >= 1
    assert limiter.calls["heartbeat"] >= 1
    assert (await limiter.states([par], "k:a"))[0].remaining == 1
    assert recorder.calls
    assert all(recorder.calls)


async def test_waiting_settlements_are_bounded(own_server: RedisServer) -> None:
    limiter = RedisLimiter(url=own_server.url, max_pending=3, timeout_s=0.3)
    par = Rule("key:a", "parallel", 10)
    grants = [await limiter.reserve(demand((par,))) for _ in range(5)]
    own_server.stop()
    for grant in grants:
        assert grant.reservation is not None
        limiter.settle(grant.reservation, 0, 0)
    assert (limiter.pending, limiter.dropped) == (3, 2)  # the two oldest are given up
    assert not await limiter.flush(force=True)
    assert limiter.pending == 3  # put back, to retry
    own_server.start()
    await limiter.aclose()  # flushes them
    assert limiter.pending == 0


async def test_fail_closed_raises_while_redis_is_down(
    own_server: RedisServer, open_limiter: Opener
) -> None:
    open_limiter.server = own_server
    recorder = Recorder()
    limiter = open_limiter(recorder, on_error="fail_closed", timeout_s=0.3)
    rules = (Rule("key:a", "parallel", 2),)
    grant = await limiter.reserve(demand(rules))
    assert grant.reservation is not None
    own_server.stop()
    with pytest.raises(LimiterUnavailableError):
        await limiter.reserve(demand(rules))
    with pytest.raises(LimiterUnavailableError):
        await limiter.states(rules, "k:a")
    limiter.settle(grant.reservation, 0, 0)  # never raises: retried later
    assert not await limiter.flush(force=True)
    assert recorder.degraded == []
    assert False in recorder.calls
    own_server.start()
    assert await limiter.flush(force=True)  # the settlement reached the restarted server
    assert (await limiter.reserve(demand(rules))).admitted


async def test_fail_open_enforces_a_local_share_and_charges_it_later(
    own_server: RedisServer, open_limiter: Opener
) -> None:
    open_limiter.server = own_server
    recorder = Recorder()
    a = open_limiter(recorder, timeout_s=0.3)
    b = open_limiter(timeout_s=0.3)
    await a.start()
    await b.start()
    for _ in range(50):  # both have beaten at least once
        if await a.beat() == 2:
            break
        await anyio.sleep(0.05)
    assert a.replicas == 2
    rpm = Rule("key:o", "requests", 10)
    budget = Rule("key:o", "budget", 10_000, "day")
    before = await a.reserve(demand((rpm, budget), cost=1000))
    assert before.reservation is not None
    assert not before.reservation.local

    own_server.stop()
    a.settle(before.reservation, 0, 70)  # made in Redis: retried until Redis is back
    grants = [await a.reserve(demand((rpm, budget), cost=50)) for _ in range(8)]
    admitted = [g.reservation for g in grants if g.reservation is not None]
    assert len(admitted) == 10 // 2  # this replica's share, never the whole limit
    assert all(r.local for r in admitted)
    assert recorder.degraded == [True]
    assert grants[-1].denied == rpm
    assert grants[-1].states[0].rule == rpm
    for reservation in admitted:
        a.settle(reservation, 0, 50)
    assert (await a.states([rpm], "k:a"))[0].remaining == 0  # the local share, no Redis

    own_server.start()
    for _ in range(100):  # the probe (every 0.5 s) finds it back
        if not a.degraded:
            break
        await anyio.sleep(0.05)
    assert recorder.degraded == [True, False]
    assert await a.flush(force=True)
    (state,) = await a.states([budget], "k:a")
    assert state.used == 70 + 5 * 50  # the outage's spend, charged to the (empty) restarted Redis
    assert (await a.reserve(demand((rpm,)))).reservation is not None


async def test_fail_open_under_load_loses_no_spend(tmp_path: Path) -> None:
    """Kill Redis while two replicas serve requests, restart it (its AOF keeps what it had):
    nobody sees an exception, both degrade and come back, and Redis ends up charged at least
    everything that was spent (a call cut off mid-reply may be retried: never less)."""
    aof = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    server = RedisServer(extra=aof).start()
    recorders = [Recorder(), Recorder()]
    limiters = [
        RedisLimiter(url=server.url, prefix="load", timeout_s=0.3, events=r.events)
        for r in recorders
    ]
    rules = (
        Rule("tenant:l", "requests", 10**6),
        Rule("tenant:l", "parallel", 100),
        Rule("tenant:l", "budget", 10**12, "month"),
    )
    spent = 0
    done = 0
    stop = anyio.Event()

    async def worker(limiter: RedisLimiter) -> None:
        nonlocal spent, done
        while not stop.is_set():
            grant = await limiter.reserve(demand(rules, tag="t:l", cost=100))
            await anyio.sleep(0.001)
            if grant.reservation is not None:
                limiter.settle(grant.reservation, 0, 10)
                spent += 10
            done += 1

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(500):  # bounded
            if condition():
                return
            await anyio.sleep(0.01)
        raise AssertionError("timed out")

    try:
        for limiter in limiters:
            await limiter.start()
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(worker, limiters[i % 2])
            await until(lambda: done >= 200)
            server.stop()
            await until(lambda: all(lim.degraded for lim in limiters))
            mark = done
            await until(lambda: done >= mark + 200)
            server.start()
            await until(lambda: not any(lim.degraded for lim in limiters))
            mark = done
            await until(lambda: done >= mark + 200)
            stop.set()
        for limiter in limiters:
            await limiter.aclose()
        assert [r.degraded for r in recorders] == [[True, False], [True, False]]
        sync = sync_client(server)
        (key,) = sync.keys("load:*budget*")
        charged = int(sync.hget(key, "s") or 0)
        sync.close()
        assert spent <= charged <= spent * 1.1
    finally:
        server.stop()
