"""Request coalescing: identical cacheable requests in flight at once share one upstream call.

The first request for a key leads a :class:`Flight`; requests for the same key that arrive
while it runs follow it:

- a plain follower waits for the complete answer and answers from it (as a body, or as a
  replayed stream when the leader did not stream);
- a streaming follower of a streaming leader subscribes to the live stream: it gets the events
  already sent, then the rest as they arrive.

A streamed flight's upstream is read by its own task (the pump), not by the leader's response,
so any one client going away, the leader's included, cancels nothing for the others; only when
no one is left does the pump stop and the upstream request get cancelled. If the leader fails
before its answer is complete, followers that have not started streaming get the same error (as
a single-flight call would: a failing upstream is not hit again by every waiter at once); when it
ended with neither answer nor error (cut short), they go upstream under a new leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import anyio
import msgspec

from gateway.background import Spawn
from gateway.closing import close_chunks
from gateway.codec import decode
from gateway.sse import SSEFramer, parse_event

log = logging.getLogger("gateway.cache")


def is_usage_only(event: bytes) -> bool:
    """Whether an SSE event is the usage chunk of ``include_usage`` (``choices`` empty)."""
    if b'"usage"' not in event or b'"choices"' not in event:
        return False
    parsed = parse_event(event)
    try:
        data = decode(parsed.data) if parsed is not None else None
    except msgspec.DecodeError:
        return False
    return isinstance(data, dict) and not data.get("choices") and bool(data.get("usage"))


class Flight:
    """One upstream call and everyone waiting on it.

    Attributes:
        finished: the outcome is known (see ``body``).
        body: the complete JSON answer, or None when there is none to share (failure).
        error: why there is none, when the upstream call failed (waiters answer with it).
        streaming: the answer streams; events are published as they come (see ``subscribe``).
    """

    def __init__(self, spawn: Spawn, on_finish: Callable[[Flight], None] | None = None) -> None:
        self._spawn = spawn
        self.finished = False
        self.body: bytes | None = None
        self.error: Exception | None = None
        self.streaming = False
        self._events: list[bytes] = []
        self._stream_ended = False
        self._stream_failed = False
        self._interest = 0
        self._pump_scope: anyio.CancelScope | None = None
        self._signal = asyncio.Event()
        self._on_finish = on_finish

    # The leader's side.
    def finish(self, body: bytes | None, error: Exception | None = None) -> None:
        """The outcome: the complete answer, or None on failure with the error that every
        waiter shares when there is one (only the first call counts).

        A failed flight retires at once; a successful one stays findable, answering newcomers
        from its body, until :meth:`retire` (once the answer is in the cache).
        """
        if self.finished:
            return
        self.finished, self.body, self.error = True, body, error
        if body is None:
            self.retire()
        self._wake()

    def retire(self) -> None:
        """Leave the coalescer's table: later requests go to the cache or lead anew."""
        if self._on_finish is not None:
            self._on_finish(self)
            self._on_finish = None

    def pump(self, chunks: AsyncIterator[bytes]) -> None:
        """Read a streamed answer on a task of its own, publishing whole SSE events.

        ``chunks`` must settle the outcome itself (:meth:`finish`); if it ends without doing so,
        the flight finishes with no body.
        """
        self._pump_scope = anyio.CancelScope()
        self._spawn(self._run_pump(chunks))  # raises when the app is stopping: nothing streams
        self.streaming = True
        self._wake()

    async def _run_pump(self, chunks: AsyncIterator[bytes]) -> None:
        assert self._pump_scope is not None
        framer = SSEFramer()
        try:
            with self._pump_scope:
                async for chunk in chunks:
                    if events := framer.feed(chunk):
                        self._events.extend(events)
                        self._wake()
                if rest := framer.flush():
                    self._events.append(rest)
        except Exception:
            log.exception("a shared upstream stream failed")
            self._stream_failed = True
        finally:
            with anyio.CancelScope(shield=True):
                await close_chunks(chunks)
            self._stream_ended = True
            self.finish(None)  # no-op when the stream settled it
            self._wake()

    # The waiters' side.
    async def outcome(self) -> bytes | None:
        """Wait for the complete answer (None: there is none; go upstream yourself)."""
        self._interest += 1
        try:
            while not self.finished:
                await self._signal.wait()
            return self.body
        finally:
            self._lose_interest()

    async def join(self, keep_usage: bool) -> Subscription | None:
        """Wait until the answer streams or its outcome is known; then the stream from its first
        event, live or complete, or None when the answer did not stream or failed.

        ``keep_usage`` False drops the usage chunk (the upstream is always asked for one, so
        that cache entries carry usage). Interest is held throughout, so the upstream is not
        cancelled between the wait and the subscription.
        """
        self._interest += 1
        try:
            while not (self.streaming or self.finished):
                await self._signal.wait()
            if self.streaming and not (self.finished and self.body is None):
                return Subscription(self, keep_usage)
            return None
        finally:
            self._lose_interest()

    def subscribe(self, keep_usage: bool) -> Subscription:
        """The streamed answer from its first event (see :meth:`join`); for the leader."""
        return Subscription(self, keep_usage)

    def _lose_interest(self) -> None:
        self._interest -= 1
        if self._interest == 0 and self._pump_scope is not None and not self._stream_ended:
            self._pump_scope.cancel()  # no one left to answer: cancel the upstream request

    def _wake(self) -> None:
        self._signal.set()
        self._signal = asyncio.Event()


class Subscription:
    """One client's view of a streamed flight: an async iterator of SSE bytes.

    Counts as interest in the flight from creation until :meth:`aclose`, which the response
    always calls, whether or not it ever iterated.
    """

    __slots__ = ("_closed", "_flight", "_keep_usage", "_next")

    def __init__(self, flight: Flight, keep_usage: bool) -> None:
        self._flight = flight
        self._keep_usage = keep_usage
        self._next = 0
        self._closed = False
        flight._interest += 1

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        flight = self._flight
        while True:
            events = flight._events
            if self._next < len(events):
                pending = events[self._next :]
                self._next = len(events)
                if not self._keep_usage:
                    pending = [e for e in pending if not is_usage_only(e)]
                if pending:
                    return b"".join(pending)
                continue
            if flight._stream_ended:
                if flight._stream_failed:
                    raise RuntimeError("the shared upstream stream failed")
                raise StopAsyncIteration
            await flight._signal.wait()

    async def aclose(self) -> None:
        """Stop following; the last one to stop cancels the upstream if it is still running."""
        if not self._closed:
            self._closed = True
            self._flight._lose_interest()


class Coalescer:
    """In-flight leaders by cache key.

    Args:
        spawn: runs the pumps of streamed flights (the app's background task group).
    """

    def __init__(self, spawn: Spawn) -> None:
        self._spawn = spawn
        self._flights: dict[str, Flight] = {}

    def follow(self, key: str) -> Flight | None:
        """The flight in progress for ``key``, or None when there is none (then lead)."""
        return self._flights.get(key)

    def lead(self, key: str) -> Flight:
        """Start the flight for ``key``; it leaves the table when it finishes."""

        def forget(flight: Flight) -> None:
            if self._flights.get(key) is flight:
                del self._flights[key]

        flight = self._flights[key] = Flight(self._spawn, forget)
        return flight

    def solo(self) -> Flight:
        """A flight that no one can follow (a refresh, or a request that gave up following)."""
        return Flight(self._spawn)

    def __len__(self) -> int:
        return len(self._flights)
