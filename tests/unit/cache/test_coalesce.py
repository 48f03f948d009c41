"""Request coalescing (gateway.cache.coalesce) against fake upstream streams: leading and
following, failures shared, live subscriptions, cancellation when every waiter left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.background import Spawn
from gateway.cache.coalesce import Coalescer, Flight, Subscription, is_usage_only
from gateway.errors import UpstreamStatusError

pytestmark = pytest.mark.anyio

USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'


def event(text: str) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"' + text.encode() + b'"}}]}\n\n'


class FakeUpstream:
    """A stream the test feeds event by event; records whether it was closed or cancelled."""

    def __init__(self, flight: Flight) -> None:
        self.flight = flight
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.cancelled = False
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        body = b""
        try:
            while (chunk := await self.queue.get()) is not None:
                body += chunk
                yield chunk
            self.flight.finish(b'{"answer": "' + body.replace(b'"', b"'") + b'"}')
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.closed = True


async def settle() -> None:
    """Let every ready task run (the pump, waiters)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def read(sub: Subscription) -> bytes:
    return b"".join([chunk async for chunk in sub])


async def test_followers_find_the_leader_and_get_its_answer(spawn: Spawn) -> None:
    coalescer = Coalescer(spawn)
    assert coalescer.follow("k") is None
    flight = coalescer.lead("k")
    assert coalescer.follow("k") is flight
    assert coalescer.follow("other") is None
    waiters = [asyncio.ensure_future(flight.outcome()) for _ in range(3)]
    await settle()
    assert not any(w.done() for w in waiters)
    flight.finish(b'{"id": 1}')
    assert await asyncio.gather(*waiters) == [b'{"id": 1}'] * 3
    # Answered but not yet cached: still findable, and newcomers answer from its body.
    assert coalescer.follow("k") is flight
    assert await flight.outcome() == b'{"id": 1}'
    flight.finish(b'{"id": 2}')  # only the first outcome counts
    assert flight.body == b'{"id": 1}'
    flight.retire()
    assert coalescer.follow("k") is None
    assert len(coalescer) == 0


async def test_a_failure_is_shared_and_retires_the_flight_at_once(spawn: Spawn) -> None:
    coalescer = Coalescer(spawn)
    flight = coalescer.lead("k")
    waiters = [asyncio.ensure_future(flight.outcome()) for _ in range(2)]
    await settle()
    error = UpstreamStatusError(400, "upstream said 400")
    flight.finish(None, error)
    assert await asyncio.gather(*waiters) == [None, None]
    assert flight.error is error
    assert coalescer.follow("k") is None  # the next request leads anew


async def test_cut_short_without_an_error_sends_waiters_upstream_themselves(spawn: Spawn) -> None:
    coalescer = Coalescer(spawn)
    flight = coalescer.lead("k")
    waiter = asyncio.ensure_future(flight.outcome())
    await settle()
    flight.finish(None)
    assert await waiter is None
    assert flight.error is None
    assert coalescer.follow("k") is None


async def test_a_late_subscriber_gets_what_was_sent_then_the_rest_live(spawn: Spawn) -> None:
    flight = Coalescer(spawn).lead("k")
    upstream = FakeUpstream(flight)
    flight.pump(upstream.chunks())
    leader = flight.subscribe(keep_usage=True)
    await upstream.queue.put(event("one") + event("two")[:10])  # a partial event is held back
    await settle()
    joined = asyncio.ensure_future(flight.join(keep_usage=False))
    await settle()
    follower = await joined
    assert follower is not None
    assert await follower.__anext__() == event("one")
    await upstream.queue.put(event("two")[10:] + USAGE)
    await upstream.queue.put(event("three"))
    await upstream.queue.put(None)
    assert await read(follower) == event("two") + event("three")  # no usage chunk: not asked
    assert await read(leader) == event("one") + event("two") + USAGE + event("three")
    await leader.aclose()
    await follower.aclose()
    assert flight.finished
    assert flight.body is not None
    assert b"three" in flight.body
    assert upstream.closed
    assert not upstream.cancelled


async def test_join_on_a_plain_answer_gives_no_subscription(spawn: Spawn) -> None:
    flight = Coalescer(spawn).lead("k")
    joined = asyncio.ensure_future(flight.join(keep_usage=True))
    await settle()
    assert not joined.done()
    flight.finish(b"{}")
    assert await joined is None


async def test_one_waiter_leaving_cancels_nothing_for_the_others(spawn: Spawn) -> None:
    flight = Coalescer(spawn).lead("k")
    upstream = FakeUpstream(flight)
    flight.pump(upstream.chunks())
    leader = flight.subscribe(keep_usage=True)
    follower = flight.subscribe(keep_usage=True)
    await upstream.queue.put(event("a"))
    await settle()
    await leader.aclose()  # the leader's client went away
    await upstream.queue.put(event("b"))
    await upstream.queue.put(None)
    assert await read(follower) == event("a") + event("b")
    await follower.aclose()
    assert not upstream.cancelled
    assert flight.body is not None


async def test_the_upstream_is_cancelled_when_every_waiter_left(spawn: Spawn) -> None:
    flight = Coalescer(spawn).lead("k")
    upstream = FakeUpstream(flight)
    flight.pump(upstream.chunks())
    subs = [flight.subscribe(keep_usage=True) for _ in range(2)]
    await upstream.queue.put(event("a"))
    await settle()
    await subs[0].aclose()
    await settle()
    assert not upstream.cancelled
    await subs[1].aclose()
    await settle()
    assert upstream.cancelled
    assert upstream.closed
    assert flight.finished
    assert flight.body is None


async def test_a_failing_shared_stream_fails_its_subscribers(spawn: Spawn) -> None:
    flight = Coalescer(spawn).lead("k")

    async def broken() -> AsyncIterator[bytes]:
        yield event("a")
        raise ConnectionResetError("upstream went away")

    sub = flight.subscribe(keep_usage=True)
    flight.pump(broken())
    assert await sub.__anext__() == event("a")
    with pytest.raises(RuntimeError, match="failed"):
        await sub.__anext__()
    await sub.aclose()
    assert flight.finished
    assert flight.body is None


def test_usage_only_events_are_recognised() -> None:
    assert is_usage_only(USAGE)
    assert not is_usage_only(event("usage"))
    assert not is_usage_only(b'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}\n\n')
    assert not is_usage_only(b'data: {"usage": "choices" broken\n\n')
