"""Budget alerts delivered to every alert sink, off the request path.

The limiter reports a threshold crossing through ``LimiterEvents.alert`` (a plain callback on
the request path or in its settlement flush); :meth:`AlertDispatcher.alert` only schedules one
send per sink and returns. A sink that fails or hangs is logged and never delays or stops the
others; :meth:`AlertDispatcher.aclose` waits (bounded) for sends still in flight, then closes
the sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from gateway.governance.limiter import Alert
from gateway.governance.sinks import AlertSink

log = logging.getLogger("gateway.alerts")

RECENT_ALERTS = 50

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class AlertDispatcher:
    """Sends each alert to every sink in the background.

    Args:
        sinks: ``(name, sink)`` pairs.
        spawn: runs a coroutine in the background (the app's ``Background.spawn``); None:
            plain tasks on the running loop, held here until they end.
        drain_s: how long :meth:`aclose` waits for sends in flight.

    Attributes:
        recent: the latest alerts (newest last, at most :data:`RECENT_ALERTS`), each its
            context plus ``at`` (Unix time): what the dashboard shows as they fire.
    """

    def __init__(
        self,
        sinks: Sequence[tuple[str, AlertSink]],
        spawn: Spawn | None = None,
        drain_s: float = 5.0,
    ) -> None:
        self._sinks = list(sinks)
        self._spawn = spawn
        self._drain_s = drain_s
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.sent = 0
        self.failed = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)

    @property
    def in_flight(self) -> int:
        """Sends started and not yet finished."""
        return self._in_flight

    def alert(self, alert: Alert, context: dict[str, Any]) -> None:
        """Send ``alert`` to every sink in the background (never blocks, never raises)."""
        if self._closed:
            log.warning(
                "alert after shutdown not sent: %s at %g", alert.rule.scope, alert.threshold
            )
            return
        self.recent.append({"at": time.time(), **context})
        for name, sink in self._sinks:
            coro = self._send(name, sink, alert, context)
            self._in_flight += 1
            self._idle.clear()
            try:
                if self._spawn is not None:
                    self._spawn(coro)
                else:
                    task = asyncio.get_running_loop().create_task(coro)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:  # no loop, or the app is stopping: the alert is lost, said so
                coro.close()
                self._finished()
                self.failed += 1
                log.exception("could not schedule budget alert for sink `%s`", name)

    async def _send(
        self, name: str, sink: AlertSink, alert: Alert, context: dict[str, Any]
    ) -> None:
        try:
            await sink.send(alert, context)
        except Exception as exc:  # noqa: BLE001 - one sink's failure must not stop the others
            self.failed += 1
            log.warning(
                "alert sink `%s` failed to deliver the alert for %s (%s: %s)",
                name,
                alert.rule.scope,
                type(exc).__name__,
                exc,
            )
        else:
            self.sent += 1
        finally:
            self._finished()

    def _finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight <= 0:
            self._idle.set()

    async def aclose(self) -> None:
        """Wait (at most ``drain_s``) for sends in flight, then close every sink."""
        self._closed = True
        try:
            async with asyncio.timeout(self._drain_s):
                await self._idle.wait()
        except TimeoutError:
            log.warning("shutdown: %d budget alerts still being sent", self._in_flight)
            for task in list(self._tasks):
                task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name, sink in self._sinks:
            try:
                await sink.aclose()
            except Exception:
                log.exception("closing alert sink `%s` failed", name)
