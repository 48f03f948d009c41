"""The limiter's lean Redis client (:mod:`gateway_limits.resp`) on real redis-servers: pipelined
replies matched to their callers, error replies, NOSCRIPT, AUTH and SELECT, unix sockets,
timeouts, a server killed mid-flight, and closing."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import anyio
import pytest
import redis
from gateway_limits.redis_limiter import RedisLimiter
from gateway_limits.resp import (
    NoScriptError,
    RespClient,
    RespConnectionError,
    RespError,
    RespTimeoutError,
    encode,
    parse_url,
)

from gateway.governance.limiter import LimiterUnavailableError, Rule
from tests.support.redis_server import RedisServer, running_redis
from tests.unit.governance.limiter_support import demand, redis_server

__all__ = ["redis_server"]  # a fixture
pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[RespClient]:
    c = RespClient(redis_server.url, timeout_s=5.0)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, to block, kill and restart."""
    with running_redis() as server:
        yield server


def sync_client(server: RedisServer, password: str | None = None, db: int = 0) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=server.port,
        password=password,
        db=db,
        decode_responses=True,
        driver_info=None,
    )


async def until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await anyio.sleep(0.01)
    raise AssertionError("the condition never held")


def blocked_clients(server: RedisServer) -> int:
    with sync_client(server) as sync:
        return int(sync.info("clients")["blocked_clients"])


def test_urls() -> None:
    a = parse_url("redis://:p%40ss@example:6380/3")
    assert (a.host, a.port, a.password, a.username, a.db) == ("example", 6380, "p@ss", None, 3)
    a = parse_url("redis://user:pw@h")
    assert (a.host, a.port, a.username, a.password, a.db) == ("h", 6379, "user", "pw", 0)
    a = parse_url("unix:///tmp/r.sock?db=2&password=x")
    assert (a.path, a.db, a.password) == ("/tmp/r.sock", 2, "x")
    for bad in ("http://h:1", "rediss://h:1", "redis://h:1/x", "redis://h:port", "redis://"):
        with pytest.raises(ValueError, match="URL") as info:
            RespClient(bad, 1.0)
        assert bad in str(info.value)


def test_encoding() -> None:
    assert (
        encode(("SET", b"k", 12, 0.5)) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$3\r\n0.5\r\n"
    )
    assert encode(("é",)) == b"*1\r\n$2\r\n\xc3\xa9\r\n"
    for bad in (True, None, [1]):
        with pytest.raises(TypeError):
            encode(("SET", "k", bad))  # type: ignore[arg-type]


async def test_replies_as_redis_py_decodes_them(client: RespClient) -> None:
    assert await client.execute("SET", "resp:s", "välue") == "OK"
    assert await client.execute("GET", "resp:s") == "välue"
    assert await client.execute("GET", "resp:missing") is None
    assert await client.execute("DEL", "resp:s", "resp:missing") == 1
    reply = await client.eval("return {1, 'two', {3}, false}", 0)
    assert reply == [1, "two", [3], None]  # Lua's false is a nil reply


async def test_many_concurrent_calls_get_their_own_replies(client: RespClient) -> None:
    n = 1000
    keys = [f"resp:incr:{i}" for i in range(n)]
    await client.execute("DEL", *keys)
    incrs = await asyncio.gather(*(client.execute("INCRBY", k, i) for i, k in enumerate(keys)))
    assert incrs == list(range(n))
    gets = await asyncio.gather(*(client.execute("GET", k) for k in reversed(keys)))
    assert gets == [str(i) for i in reversed(range(n))]

    # interleaved callers on one connection, each awaiting a few calls of its own
    async def caller(i: int) -> list[object]:
        return [await client.execute("INCR", keys[i]), await client.execute("GET", keys[i])]

    assert await asyncio.gather(*(caller(i) for i in range(n))) == [
        [i + 1, str(i + 1)] for i in range(n)
    ]
    await client.execute("DEL", *keys)


async def test_error_replies_raise_and_the_connection_goes_on(client: RespClient) -> None:
    await client.execute("SET", "resp:text", "x")
    results = await asyncio.gather(
        client.execute("INCR", "resp:text"),
        client.execute("GET", "resp:text"),
        client.execute("NOSUCHCOMMAND"),
        client.execute("PING"),
        return_exceptions=True,
    )
    assert isinstance(results[0], RespError)
    assert "not an integer" in str(results[0])
    assert results[1] == "x"
    assert isinstance(results[2], RespError)
    assert "unknown command" in str(results[2])
    assert results[3] == "PONG"
    with pytest.raises(RespError, match="ERR Error running script"):
        await client.eval("return redis.error_reply('ERR Error running script: boom')", 0)


async def test_noscript_and_the_eval_fallback(client: RespClient) -> None:
    source = "return {KEYS[1], ARGV[1]}"
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    await client.execute("SCRIPT", "FLUSH")
    with pytest.raises(NoScriptError, match="NOSCRIPT"):
        await client.evalsha(sha, 1, "k", "v")
    assert await client.eval(source, 1, "k", "v") == ["k", "v"]  # EVAL caches it
    assert await client.evalsha(sha, 1, "k2", 7) == ["k2", "7"]


async def test_auth_and_select() -> None:
    with running_redis_extra("--requirepass", "s3cr:t") as server:
        url = f"redis://:s3cr%3At@127.0.0.1:{server.port}/3"
        good = RespClient(url, timeout_s=5.0)
        try:
            assert await good.execute("SET", "resp:db", "three") == "OK"
        finally:
            await good.aclose()
        with sync_client(server, password="s3cr:t", db=3) as sync:
            assert sync.get("resp:db") == "three"
        with sync_client(server, password="s3cr:t", db=0) as sync:
            assert sync.get("resp:db") is None
        wrong = RespClient(f"redis://:nope@127.0.0.1:{server.port}/0", timeout_s=5.0)
        anonymous = RespClient(server.url, timeout_s=5.0)
        try:
            with pytest.raises(RespError, match=r"WRONGPASS|invalid"):
                await wrong.execute("PING")
            with pytest.raises(RespError, match="NOAUTH"):
                await anonymous.execute("PING")
        finally:
            await wrong.aclose()
            await anonymous.aclose()


async def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    with running_redis_extra("--unixsocket", str(path)) as server:
        c = RespClient(f"unix://{path}?db=2", timeout_s=5.0)
        try:
            assert await c.execute("SET", "resp:unix", "u") == "OK"
        finally:
            await c.aclose()
        with sync_client(server, db=2) as sync:
            assert sync.get("resp:unix") == "u"


async def test_a_late_reply_fails_every_waiting_call_then_it_reconnects(
    own_server: RedisServer,
) -> None:
    c = RespClient(own_server.url, timeout_s=0.2)
    try:
        assert await c.execute("PING") == "PONG"
        # the connection blocks in BLPOP: the calls pipelined behind it wait too
        calls = [c.execute("BLPOP", "resp:never", 0), *(c.execute("PING") for _ in range(5))]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, RespTimeoutError) for r in results)
        assert all(isinstance(r, TimeoutError) for r in results)  # what the limiter catches
        assert await c.execute("PING") == "PONG"  # on a new connection
    finally:
        await c.aclose()


async def test_a_paused_server_times_out(own_server: RedisServer) -> None:
    c = RespClient(own_server.url, timeout_s=0.2)
    try:
        assert await c.execute("PING") == "PONG"
        with sync_client(own_server) as sync:
            sync.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        with pytest.raises(RespTimeoutError):
            await c.execute("PING")
    finally:
        await c.aclose()


async def test_a_killed_server_fails_the_calls_in_flight_then_it_reconnects(
    own_server: RedisServer,
) -> None:
    c = RespClient(own_server.url, timeout_s=30.0)
    try:
        calls = [
            asyncio.ensure_future(c.execute("BLPOP", "resp:never", 0)),
            *(asyncio.ensure_future(c.execute("PING")) for _ in range(5)),
        ]
        await until(lambda: blocked_clients(own_server) == 1)
        own_server.stop()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, RespConnectionError) for r in results), results
        with pytest.raises(RespConnectionError, match="cannot connect"):
            await c.execute("PING")  # refused while it is down
        own_server.start()
        assert await c.execute("PING") == "PONG"
    finally:
        await c.aclose()


async def test_concurrent_callers_share_one_connect(own_server: RedisServer) -> None:
    c = RespClient(own_server.url, timeout_s=5.0)
    try:
        replies = await asyncio.gather(*(c.execute("CLIENT", "ID") for _ in range(50)))
        assert len(set(replies)) == 1  # one connection served them all
        with sync_client(own_server) as sync:
            assert int(sync.info("clients")["connected_clients"]) == 2  # it and this one
    finally:
        await c.aclose()


async def test_a_cancelled_caller_does_not_shift_the_replies(own_server: RedisServer) -> None:
    c = RespClient(own_server.url, timeout_s=30.0)
    try:
        await c.execute("DEL", "resp:list")
        blocked = asyncio.ensure_future(c.execute("BLPOP", "resp:list", 0))
        cancelled = asyncio.ensure_future(c.execute("ECHO", "dropped"))
        await until(lambda: blocked_clients(own_server) == 1)
        cancelled.cancel()
        with sync_client(own_server) as sync:
            sync.rpush("resp:list", "item")
        assert await blocked == ["resp:list", "item"]
        assert await c.execute("ECHO", "mine") == "mine"
    finally:
        await c.aclose()


async def test_close_fails_waiting_calls_and_leaves_no_task(own_server: RedisServer) -> None:
    before = asyncio.all_tasks()
    c = RespClient(own_server.url, timeout_s=30.0)
    assert await c.execute("PING") == "PONG"
    waiting = asyncio.ensure_future(c.execute("BLPOP", "resp:never", 0))
    await until(lambda: blocked_clients(own_server) == 1)
    await c.aclose()
    with pytest.raises(RespConnectionError):
        await waiting
    with pytest.raises(RespConnectionError, match="closed"):
        await c.execute("PING")
    await c.aclose()  # again: nothing to do
    assert asyncio.all_tasks() <= before


async def test_close_during_a_connect_fails_its_callers(own_server: RedisServer) -> None:
    c = RespClient(own_server.url, timeout_s=30.0)
    calls = [asyncio.ensure_future(c.execute("PING")) for _ in range(3)]
    await asyncio.sleep(0)  # they wait on the one connect
    await c.aclose()
    for call in calls:
        with pytest.raises(RespConnectionError, match="closed"):
            await call


async def test_the_limiter_pipelines_on_one_connection(own_server: RedisServer) -> None:
    limiter = RedisLimiter(url=own_server.url, prefix="resp-limiter")
    rules = (Rule("key:a", "requests", 1000), Rule("key:a", "tokens", 10**6))
    try:
        grants = await asyncio.gather(
            *(limiter.reserve(demand(rules, tokens=10)) for _ in range(100))
        )
        assert all(g.reservation is not None for g in grants)
        for g in grants:
            assert g.reservation is not None
            limiter.settle(g.reservation, 5, 0)
        assert await limiter.flush(force=True)
        with sync_client(own_server) as sync:
            # redis-py's pool would have opened a connection per concurrent call
            assert int(sync.info("clients")["connected_clients"]) == 2  # the limiter's, this
        assert limiter.calls["reserve"] == 100
        assert not limiter.degraded
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("on_error", ["fail_open", "fail_closed"])
async def test_the_limiter_treats_a_timeout_as_unreachable(
    own_server: RedisServer, on_error: Literal["fail_open", "fail_closed"]
) -> None:
    limiter = RedisLimiter(
        url=own_server.url,
        prefix="resp-timeout",
        timeout_s=0.2,
        on_error=on_error,
    )
    rules = (Rule("key:a", "requests", 10),)
    try:
        assert (await limiter.reserve(demand(rules))).reservation is not None
        with sync_client(own_server) as sync:
            sync.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        if on_error == "fail_closed":
            with pytest.raises(LimiterUnavailableError):
                await limiter.reserve(demand(rules))
        else:
            grant = await limiter.reserve(demand(rules))
            assert grant.reservation is not None
            assert grant.reservation.local
            assert limiter.degraded
    finally:
        await limiter.aclose()


@contextmanager
def running_redis_extra(*extra: str) -> Iterator[RedisServer]:
    """A redis-server with extra arguments, stopped at the end."""
    server = RedisServer(extra=extra)
    try:
        yield server.start()
    finally:
        server.stop()
