"""Collect engine metrics for the backends whose strategy routes on them.

Run by the app's lifespan. Every ``interval_s``, each backend of a group whose strategy
:class:`~gateway.routing.base.UsesEngineMetrics`, or whose admission control reads the engines
(``scheduling.max_engine_waiting``, ``max_kv_cache``), and whose provider is an
:class:`~gateway.providers.base.EngineMetricsSource` is asked for its load, within the interval;
after each round, ``on_round`` runs (admission releases waiters the fresh readings make room
for).
Reading the engine is the provider's business (its plugin knows the engine's metrics): this loop
names no engine. A failed reading leaves the old one, which then goes stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from gateway.providers.base import EngineMetricsSource
from gateway.routing.backends import Backend, ModelCatalog, ModelGroup
from gateway.routing.base import UsesEngineMetrics

log = logging.getLogger("gateway.scraper")


async def scrape_once(backend: Backend, source: EngineMetricsSource, timeout_s: float) -> None:
    """Refresh ``backend.engine`` from ``source`` (its provider), within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            metrics = await source.engine_metrics()
    except Exception as exc:  # noqa: BLE001 - a plugin's failure must not stop the loop
        log.debug("engine metrics of %s failed: %s: %s", backend.name, type(exc).__name__, exc)
        return
    if metrics is not None:
        backend.engine = metrics


def engine_targets(catalog: ModelCatalog) -> list[tuple[Backend, EngineMetricsSource]]:
    """The backends (with their providers) to read: those of groups whose strategy routes on
    engine metrics or whose admission reads them, and whose provider can report them (live)."""
    return [
        (b, b.provider)
        for g in catalog.groups
        if _reads_engines(g)
        for b in g.backends
        if isinstance(b.provider, EngineMetricsSource)
    ]


def _reads_engines(group: ModelGroup) -> bool:
    strategy = group.strategy
    if isinstance(strategy, UsesEngineMetrics) and strategy.needs_engine_metrics:
        return True
    scheduling = group.settings.scheduling
    return scheduling is not None and scheduling.reads_engines


async def scrape_forever(
    catalog: ModelCatalog,
    interval_s: float = 0.5,
    on_round: Callable[[], None] | None = None,
) -> None:
    """Read those backends each ``interval_s`` until cancelled (following the live catalog)."""
    while True:
        started = time.monotonic()
        targets = engine_targets(catalog)
        await asyncio.gather(*(scrape_once(b, source, interval_s) for b, source in targets))
        if on_round is not None and targets:
            on_round()
        with contextlib.suppress(ValueError):
            await asyncio.sleep(max(interval_s - (time.monotonic() - started), 0.05))
