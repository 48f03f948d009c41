"""Active health checks: probe each backend whose provider can be probed, on an interval.

A backend is taken out of routing after ``unhealthy_after`` failed probes in a row and put back
after ``healthy_after`` good ones. Passive signals (errors on real traffic, the breaker) work
alongside; a good answer on real traffic also marks the backend healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from gateway.routing.backends import Backend, ModelGroup

log = logging.getLogger("gateway.health")


class Prober:
    """Probes one backend and turns consecutive results into its ``healthy`` flag."""

    def __init__(self, backend: Backend, group: ModelGroup) -> None:
        self.backend = backend
        self.settings = group.settings.health_check
        self._bad = 0
        self._good = 0

    async def probe(self) -> bool:
        check = getattr(self.backend.provider, "health", None)
        if check is None:
            return True
        try:
            ok = bool(await asyncio.wait_for(check(), self.settings.timeout_s))
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

    async def run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self.settings.interval_s)


async def probe_forever(groups: Sequence[ModelGroup]) -> None:
    """Run a prober per backend of every group with health checks enabled, until cancelled."""
    probers = [
        Prober(b, g)
        for g in groups
        if g.settings.health_check.enabled
        for b in g.backends
        if getattr(b.provider, "health", None) is not None
    ]
    if not probers:
        return
    tasks = [asyncio.create_task(p.run()) for p in probers]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
