"""Background work that the app's lifespan owns: nothing outlives the app, nothing is lost.

Two kinds:
- **tasks** (health probes, engine scrapes, the pumps of shared streams, embedding batches) are
  held by the app's :class:`Background` from start-up and cancelled at shutdown;
- **off-path writes** (cache entries now; usage records next) go through a bounded queue that a
  few writers drain after the response was sent, and that is drained before shutdown, so a
  request never waits on a write and a stopping gateway does not drop the writes it took.

Plain asyncio tasks rather than an anyio task group: work is spawned from timer callbacks
(the embedding batcher's deadline) as well as from tasks, and a task group can only be entered
from a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger("gateway.background")

Job = Callable[[], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, None]], None]
"""Runs a coroutine in the background (what :class:`~gateway.cache.coalesce.Flight` pumps on)."""


class Background:
    """The app's background tasks and off-path write queue; ``async with`` it for the app's
    lifetime.

    Args:
        queue_size: most writes waiting at once; beyond it :meth:`submit` refuses (the caller
            counts the drop) rather than letting memory grow without bound under a slow sink.
        writers: writes running at once.
        drain_s: how long shutdown waits for queued writes.
    """

    def __init__(self, queue_size: int = 10_000, writers: int = 4, drain_s: float = 5.0) -> None:
        self._queue_size = queue_size
        self._writers = writers
        self._drain_s = drain_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[Job] | None = None
        self._writer_tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    @property
    def running(self) -> bool:
        """Between start-up and shutdown."""
        return self._queue is not None

    async def __aenter__(self) -> Background:
        self._queue = asyncio.Queue(self._queue_size)
        loop = asyncio.get_running_loop()
        self._writer_tasks = [
            loop.create_task(self._write(self._queue)) for _ in range(self._writers)
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        queue, self._queue = self._queue, None  # refuse new writes from here on
        if queue is None:
            return
        try:
            async with asyncio.timeout(self._drain_s):
                await queue.join()
        except TimeoutError:
            log.warning("shutdown: %d off-path writes left undone", queue.qsize())
        await _cancel_all([*self._writer_tasks, *self._tasks])
        self._writer_tasks = []

    async def _write(self, queue: asyncio.Queue[Job]) -> None:
        while True:
            job = await queue.get()
            try:
                await job()
            except Exception:
                log.exception("an off-path write failed")
            finally:
                queue.task_done()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` until it ends or the app stops; its exceptions are logged.

        Raises:
            RuntimeError: the app is not running.
        """
        if self._queue is None:
            coro.close()
            raise RuntimeError("the gateway is not running: no background tasks")
        task = asyncio.get_running_loop().create_task(_logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def submit(self, job: Job) -> bool:
        """Queue an off-path write; False when the queue is full or the app is stopping (the
        write is not done, and the caller decides what that costs)."""
        if self._queue is None:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    @property
    def pending(self) -> int:
        """Writes waiting in the queue."""
        return 0 if self._queue is None else self._queue.qsize()


async def _logged(coro: Coroutine[Any, Any, None]) -> None:
    try:
        await coro
    except Exception:
        log.exception("a background task failed")


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
