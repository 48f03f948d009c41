"""Active health checks: probe each backend whose provider is ``HealthChecked``, on an interval.

A backend is taken out of routing after ``unhealthy_after`` failed probes in a row and put back
after ``healthy_after`` good ones. Passive signals (errors on real traffic, the breaker) work
alongside; a good answer on real traffic also marks the backend healthy. The prober follows the
live catalog, so backends added or removed at run time are probed (or no longer) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from gateway.providers.base import HealthChecked
from gateway.routing.backends import Backend, ModelCatalog, ModelGroup

log = logging.getLogger("gateway.health")
TICK_S = 0.1


class Prober:
    """Probes one backend and turns consecutive results into its ``healthy`` flag."""

    def __init__(self, backend: Backend, check: HealthChecked, group: ModelGroup) -> None:
        self.backend = backend
        self.check = check
        self.settings = group.settings.health_check
        self.next_at = 0.0
        self.task: asyncio.Task[bool] | None = None
        self._bad = 0
        self._good = 0

    async def probe(self) -> bool:
        try:
            ok = bool(await asyncio.wait_for(self.check.health(), self.settings.timeout_s))
        except Exception:  # noqa: BLE001 - any failure of a probe means "not healthy"
            ok = False
        health = self.backend.health
        if ok:
            self._bad, self._good = 0, self._good + 1
            if not health.healthy and self._good >= self.settings.healthy_after:
                log.info("backend %s is healthy again", self.backend.name)
                health.healthy = True
        else:
            self._good, self._bad = 0, self._bad + 1
            if health.healthy and self._bad >= self.settings.unhealthy_after:
                log.warning("backend %s failed %d health checks", self.backend.name, self._bad)
                health.healthy = False
        return ok

    def due(self, now: float) -> bool:
        """Whether a probe should start now (none running, interval elapsed)."""
        return (self.task is None or self.task.done()) and now >= self.next_at

    def start(self, now: float) -> None:
        self.next_at = now + self.settings.interval_s
        self.task = asyncio.get_running_loop().create_task(self.probe())


async def probe_forever(catalog: ModelCatalog) -> None:
    """Probe every probeable backend of every group with health checks on, until cancelled."""
    probers: dict[int, Prober] = {}
    try:
        while True:
            now = time.monotonic()
            live: dict[int, Prober] = {}
            for group in catalog.groups:
                if not group.settings.health_check.enabled:
                    continue
                for backend in group.backends:
                    provider = backend.provider
                    if not isinstance(provider, HealthChecked):
                        continue
                    prober = probers.get(id(backend)) or Prober(backend, provider, group)
                    live[id(backend)] = prober
                    if prober.due(now):
                        prober.start(now)
            probers = live
            await asyncio.sleep(TICK_S)
    finally:
        tasks = [p.task for p in probers.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
