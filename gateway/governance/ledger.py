"""The usage ledger: usage and audit records handed to every configured sink, off the request
path.

:meth:`UsageLedger.record` and :meth:`UsageLedger.audit` only append to one bounded buffer per
sink (usage and audit records counted together against ``buffer_size``): O(1), never blocking,
never raising, never awaiting. One flusher task per sink writes batches of up to ``batch_size``,
as soon as a batch is full and at least every ``flush_interval_s`` while records wait. A failed
write is retried with capped exponential backoff; the failed batch stays at the head of the
buffer, so nothing is reordered and nothing is lost unless the buffer overflows, in which case
the *new* record is dropped for that sink and counted (``on_drop(sink, 1)``, a metric); every
failed write is counted too (``on_failure(sink)``), so a sink that is down shows before its
buffer fills. Each
sink has its own buffer and task, so a slow or broken sink never holds back the others.

Because a batch may be written, fail to acknowledge, and be written again, sinks are idempotent
by ``request_id`` / ``audit_id`` (the contract of :mod:`gateway.governance.sinks`).

Shutdown (:meth:`UsageLedger.aclose`, from the app's lifespan on SIGTERM) flushes what is still
buffered, bounded by ``drain_s``, then closes each sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from gateway.governance.sinks import AuditRecord, SpendReader, UsageRecord, UsageSink

log = logging.getLogger("gateway.usage")


def _no_drop(sink: str, count: int) -> None:
    pass


def _no_failure(sink: str) -> None:
    pass


class _Lane:
    """One sink's buffer and flusher state."""

    __slots__ = ("arrived", "audit", "failing", "full", "name", "sink", "task", "usage")

    def __init__(self, name: str, sink: UsageSink) -> None:
        self.name = name
        self.sink = sink
        self.usage: deque[UsageRecord] = deque()
        self.audit: deque[AuditRecord] = deque()
        self.arrived = asyncio.Event()  # a record entered the empty buffer (or shutdown began)
        self.full = asyncio.Event()  # a batch is full (or shutdown began)
        self.task: asyncio.Task[None] | None = None
        self.failing = False

    @property
    def size(self) -> int:
        return len(self.usage) + len(self.audit)


class UsageLedger:
    """Buffers records per sink and writes them in batches in the background.

    Args:
        sinks: ``(name, sink)`` pairs; the name labels logs and the drop metric.
        buffer_size: records (usage and audit together) waiting per sink at most.
        batch_size: records per ``write`` / ``write_audit`` call at most.
        flush_interval_s: the longest a record waits before its sink is written to.
        on_drop: called with ``(sink name, count)`` when records are dropped (a full buffer, or
            a record arriving after shutdown began); must be cheap.
        on_failure: called with the sink's name after each failed write; must be cheap.
        drain_s: how long :meth:`aclose` spends flushing before giving up on what is left.
        retry_initial_s: the first backoff after a failed write; doubled per failure.
        retry_max_s: the longest backoff.
    """

    def __init__(
        self,
        sinks: Sequence[tuple[str, UsageSink]],
        *,
        buffer_size: int,
        batch_size: int,
        flush_interval_s: float,
        on_drop: Callable[[str, int], None] = _no_drop,
        on_failure: Callable[[str], None] = _no_failure,
        drain_s: float = 5.0,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 10.0,
    ) -> None:
        if buffer_size < 1 or batch_size < 1:
            raise ValueError("buffer_size and batch_size must be at least 1")
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        self._lanes = [_Lane(name, sink) for name, sink in sinks]
        self._sinks = [sink for _, sink in sinks]
        self._buffer_size = buffer_size
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._on_drop = on_drop
        self._on_failure = on_failure
        self._drain_s = drain_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._closing = False
        self._closed = asyncio.Event()  # set when shutdown begins: interrupts backoffs
        self._dropped = 0
        self._reader = next((s for s in self._sinks if isinstance(s, SpendReader)), None)

    # -- the request path ----------------------------------------------------------------------

    def record(self, rec: UsageRecord) -> None:
        """Queue a usage record for every sink (never blocks, never raises)."""
        for lane in self._lanes:
            self._put(lane, lane.usage, rec)

    def audit(self, rec: AuditRecord) -> None:
        """Queue an audit record for every sink (never blocks, never raises)."""
        for lane in self._lanes:
            self._put(lane, lane.audit, rec)

    def _put(self, lane: _Lane, queue: deque[Any], rec: object) -> None:
        if self._closing or lane.size >= self._buffer_size:
            self._drop(lane.name)
            return
        if not queue:
            lane.arrived.set()
        queue.append(rec)
        if len(queue) >= self._batch_size:
            lane.full.set()

    def _drop(self, name: str) -> None:
        self._dropped += 1
        try:
            self._on_drop(name, 1)
        except Exception:  # a metric must not fail a request
            log.exception("the usage drop counter failed")

    def _count_failure(self, name: str) -> None:
        try:
            self._on_failure(name)
        except Exception:  # a metric must not stop the retries
            log.exception("the usage sink failure counter failed")

    # -- introspection -------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether records go anywhere (some sink is configured and shutdown has not begun);
        the request path skips building records when not."""
        return bool(self._lanes) and not self._closing

    @property
    def reader(self) -> SpendReader | None:
        """The first sink that answers spend queries (None: none does)."""
        return self._reader

    @property
    def pending(self) -> int:
        """Records buffered, over every sink (a record waiting for two sinks counts twice)."""
        return sum(lane.size for lane in self._lanes)

    def backlog(self) -> dict[str, int]:
        """Records buffered per sink, by name (a gauge per sink)."""
        return {lane.name: lane.size for lane in self._lanes}

    @property
    def dropped(self) -> int:
        """Records dropped since start, over every sink."""
        return self._dropped

    # -- the flushers --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start one flusher task per sink (once, inside the running event loop)."""
        loop = asyncio.get_running_loop()
        for lane in self._lanes:
            if lane.task is None:
                lane.task = loop.create_task(self._flush_forever(lane), name=f"usage:{lane.name}")

    async def _flush_forever(self, lane: _Lane) -> None:
        while not self._closing:
            await lane.arrived.wait()  # idle: nothing to do until a record comes
            if lane.size < self._batch_size and not self._closing:
                # The first record waits at most the interval for its batch to fill.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await lane.full.wait()
            lane.arrived.clear()
            lane.full.clear()
            if self._closing:
                break
            await self._drain(lane)
            if lane.size:
                lane.arrived.set()  # records came while writing: go round again
        await self._drain(lane)  # shutdown: what is left (aclose bounds the time)

    async def _drain(self, lane: _Lane) -> None:
        """Write everything buffered now, in order, batch by batch."""
        while lane.usage or lane.audit:
            if lane.usage:
                batch: list[Any] = list(itertools.islice(lane.usage, self._batch_size))
                await self._deliver(lane, lane.sink.write, batch)
                for _ in batch:
                    lane.usage.popleft()
            if lane.audit:
                batch = list(itertools.islice(lane.audit, self._batch_size))
                await self._deliver(lane, lane.sink.write_audit, batch)
                for _ in batch:
                    lane.audit.popleft()

    async def _deliver(
        self, lane: _Lane, write: Callable[[Sequence[Any]], Any], batch: list[Any]
    ) -> None:
        """``write(batch)`` until it succeeds, backing off between tries (cancellation stops
        it; the batch then stays buffered)."""
        delay = self._retry_initial_s
        while True:
            try:
                await write(batch)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the batch, retry
                self._count_failure(lane.name)
                if not lane.failing:
                    log.warning(
                        "usage sink `%s` failed (%s: %s); retrying with backoff",
                        lane.name,
                        type(exc).__name__,
                        exc,
                    )
                    lane.failing = True
            else:
                if lane.failing:
                    log.info("usage sink `%s` recovered", lane.name)
                    lane.failing = False
                return
            if self._closing:
                # Several more tries fit in the drain time; aclose's deadline bounds them.
                await asyncio.sleep(min(delay, self._drain_s / 10))
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._closed.wait()  # shutdown retries at once
            delay = min(delay * 2, self._retry_max_s)

    # -- shutdown ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Flush what is buffered (at most ``drain_s``), then close every sink. Records that
        arrive from here on are dropped (counted)."""
        if self._closing:
            return
        self._closing = True
        self._closed.set()
        for lane in self._lanes:
            lane.arrived.set()
            lane.full.set()
        loop = asyncio.get_running_loop()
        tasks = [
            lane.task or loop.create_task(self._drain(lane), name=f"usage-drain:{lane.name}")
            for lane in self._lanes
        ]
        if tasks:
            done, left = await asyncio.wait(tasks, timeout=self._drain_s)
            for task in left:
                task.cancel()
            for task in [*done, *left]:
                with contextlib.suppress(asyncio.CancelledError):
                    if exc := await _result(task):
                        log.error("usage sink flusher failed: %r", exc)
        for lane in self._lanes:
            if lane.size:
                log.warning(
                    "shutdown: %d records not written to usage sink `%s`", lane.size, lane.name
                )
            try:
                await lane.sink.aclose()
            except Exception:
                log.exception("closing usage sink `%s` failed", lane.name)


async def _result(task: asyncio.Task[None]) -> BaseException | None:
    try:
        await task
    except asyncio.CancelledError:
        return None
    except Exception as exc:  # noqa: BLE001 - reported by the caller
        return exc
    return None
