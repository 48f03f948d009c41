"""The dashboard's update loop and the pages that follow it.

Nothing runs while no page is open: the first page to connect starts the loop, which reads
the app's state every ``dashboard.update_interval_s`` (:mod:`gateway.dashboard.snapshot`,
:mod:`gateway.dashboard.live`), keeps the last ``history_s`` of updates for the sparklines of
pages that connect later, and stops once no page has been open for :data:`IDLE_STOP_S`. With a
fleet board (:mod:`gateway.dashboard.fleet`) the loop runs from start-up instead, because the
replica a page connects to shows every replica's numbers; while none of this replica's pages is
open it only publishes its part (without the budget and node reads, which the replica serving
the page does itself, and without reading engines the scraper does not already read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from gateway.dashboard.fleet import FleetBoard
from gateway.dashboard.live import (
    BudgetRules,
    list_budgets,
    read_budgets,
    read_engines,
    read_nodes,
    recent_alerts,
)
from gateway.dashboard.snapshot import read_sample, replica_part
from gateway.dashboard.view import merge_parts, render
from gateway.dashboard.window import Ring
from gateway.routing.base import EngineMetrics
from gateway.settings_dashboard import DashboardSettings
from gateway.state import GatewayState
from gateway.telemetry.metrics import LATENCY_BUCKETS

log = logging.getLogger("gateway.dashboard")

IDLE_STOP_S = 30.0
"""How long the loop keeps running after the last page closed (a reload keeps its history)."""

BOUNDS = (*LATENCY_BUCKETS, math.inf)

BUDGETS_LISTED_EVERY_S = 10.0
"""How often the key store's budgets are listed again (their spend is read every update)."""


class DashboardFeed:
    """Updates for the pages of one app.

    Args:
        state: the app's state (read, never written).
        board: this replica's side of the fleet's shared snapshots (None: this replica only).
    """

    def __init__(self, state: GatewayState, board: FleetBoard | None = None) -> None:
        self.state = state
        self.settings: DashboardSettings = state.settings.dashboard
        self.board = board
        s = self.settings
        self._ring = Ring(max(s.rate_window_s, s.quantile_window_s))
        self._views: deque[dict[str, Any]] = deque(
            maxlen=max(2, math.ceil(s.history_s / s.update_interval_s))
        )
        self._engines: dict[str, EngineMetrics] = {}
        self._budget_rules: BudgetRules = {}
        self._budgets_listed_at = -math.inf
        self._seq = 0
        self._pages = 0
        self._idle_since = time.monotonic()
        self._running = False
        self._tick = asyncio.Event()

    @property
    def pages(self) -> int:
        """Pages following the updates now."""
        return self._pages

    def start(self) -> None:
        """Start the loop in the app's background unless it runs already."""
        if not self._running:
            self._running = True
            self.state.background.spawn(self._run())

    async def follow(
        self, after: int | None = None, until: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The kept updates newer than sequence number ``after`` (all of them when None or in
        the future), then each new one as it is made, until the caller stops iterating or
        ``time.monotonic()`` passes ``until`` (even if no update comes: the loop may fail)."""
        if after is not None and after > time.time() * 1000 + 60_000:
            after = None  # not an id this fleet made
        self._pages += 1
        self.start()
        try:
            seen = -1 if after is None else after
            while True:
                tick = self._tick
                for view in [v for v in self._views if v["seq"] > seen]:
                    seen = view["seq"]
                    yield view
                if until is None:
                    await tick.wait()
                    continue
                try:
                    await asyncio.wait_for(tick.wait(), max(0.0, until - time.monotonic()))
                except TimeoutError:
                    return
        finally:
            self._pages -= 1
            if self._pages == 0:
                self._idle_since = time.monotonic()

    def _idle(self) -> bool:
        return (
            self.board is None
            and self._pages == 0
            and time.monotonic() - self._idle_since > IDLE_STOP_S
        )

    async def _run(self) -> None:
        # A loop that stopped left stale readings: rates must not span the gap.
        self._ring.clear()
        self._views.clear()
        interval = self.settings.update_interval_s
        try:
            while not self._idle():
                started = time.monotonic()
                try:
                    await self.update()
                except Exception:
                    log.exception("dashboard update failed")
                with contextlib.suppress(ValueError):
                    await asyncio.sleep(max(interval - (time.monotonic() - started), 0.05))
        finally:
            self._running = False

    async def update(self) -> None:
        """Read the state once: publish this replica's part (with a fleet board) and, while
        a page is open, make the next update and wake the pages."""
        state, settings = self.state, self.settings
        timeout_s = min(1.0, settings.update_interval_s)
        watched = self._pages > 0
        # Engines are read only for a page: a replica that only publishes leaves them be.
        engines = await read_engines(state.catalog, self._engines, timeout_s, read_now=watched)
        sample, in_flight = read_sample(state.metrics.registry, engines, time.monotonic())
        self._ring.push(sample)
        part = replica_part(
            self._ring,
            in_flight,
            state.catalog,
            state.admissions,
            engines,
            rate_window_s=settings.rate_window_s,
            quantile_window_s=settings.quantile_window_s,
        )
        part["replica"] = self.board.replica if self.board else "local"
        part["at"] = time.time()
        part["alerts"] = recent_alerts(state.governance.alerts.recent, time.time() - 3600)
        part["budgets"] = await self._budgets() if watched else []
        part["nodes"] = (
            await read_nodes(state.providers.http, settings.node_agents, timeout_s)
            if watched and settings.node_agents
            else []
        )
        parts = await self.board.exchange(part) if self.board is not None else None
        if not watched:
            return
        if parts:
            parts = [p for p in parts if p is part or _mergeable(p)] or [part]
        view = render(
            merge_parts(parts or [part]),
            BOUNDS,
            replicas=len(parts) if parts else 1,
            shared=parts is not None,
        )
        # Milliseconds since the epoch, never repeating: a page that reconnects to another
        # replica (or to this one restarted) resumes after the last update it saw.
        self._seq = max(self._seq + 1, int(part["at"] * 1000))
        view.update(seq=self._seq, at=part["at"], interval_s=settings.update_interval_s)
        self._views.append(view)
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _budgets(self) -> list[dict[str, Any]]:
        governance = self.state.governance
        try:
            if time.monotonic() - self._budgets_listed_at > BUDGETS_LISTED_EVERY_S:
                self._budget_rules = await list_budgets(governance.store)
                self._budgets_listed_at = time.monotonic()
            return await read_budgets(self._budget_rules, governance.limiter)
        except Exception as exc:  # noqa: BLE001 - a store that is down hides the budgets only
            log.warning("dashboard: budgets not read: %s: %s", type(exc).__name__, exc)
            return []


def _mergeable(part: Mapping[str, Any]) -> bool:
    """Whether another replica's part merges (one of another version, mid-rollout, may not):
    a part that does not is left out of the fleet's view rather than failing every update."""
    try:
        merge_parts([part])
    except (KeyError, TypeError, ValueError, AttributeError):
        log.warning("left out replica %r's dashboard part: it does not merge", part.get("replica"))
        return False
    return True
