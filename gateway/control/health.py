"""health-sweep: probe every backend of a config from outside the data plane.

A replica knows a backend through its own traffic and its own probes; the sweep gives the
fleet a second, independent view, taken from where the control plane runs (a scheduled cloud
function, or ``gateway control health-sweep`` from cron). What it saw goes to the shared store
as :class:`~gateway.control.base.HealthHint`\\ s, which replicas take as a hint, never as the
only truth (:mod:`gateway.control.hints`), and to the metric publishers (``BackendHealthy``
1/0 and ``ProbeLatency`` in milliseconds, dimensions ``group`` and ``backend``).

Providers are built as the gateway builds them (:class:`gateway.assembly.CatalogBuilder`), so
a backend is probed the way its replicas probe it: through the provider's ``HealthChecked``
capability when it has one, else with ``GET <url>/health`` (vLLM's route), healthy when it
answers below 500 (a server without the route answers 404, which still proves it is up). A
backend without a URL and without the capability cannot be probed and gets no hint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from gateway.assembly import CatalogBuilder
from gateway.control.base import ControlStore, HealthHint, MetricPoint, MetricPublisher
from gateway.control.parts import plugin_registries
from gateway.plugins import Registries
from gateway.providers.base import HealthChecked, ProviderContext
from gateway.routing.backends import Backend
from gateway.settings import Settings

log = logging.getLogger("gateway.control.health")

NAMESPACE = "Gateway/Health"
"""The metric namespace of the sweep's points."""


async def _probe(
    backend: Backend, context: ProviderContext, timeout_s: float, now: float
) -> HealthHint:
    """One backend's hint; a failure or a timeout is a result (unhealthy), never raised."""
    provider = backend.provider
    started = time.perf_counter()
    error: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            if isinstance(provider, HealthChecked):
                healthy = bool(await provider.health())
                error = None if healthy else "its health check failed"
            else:
                async with context.http.get(f"{backend.spec.url}/health") as response:
                    healthy = response.status < 500
                    error = None if healthy else f"GET /health answered {response.status}"
    except TimeoutError:
        healthy, error = False, f"no answer within {timeout_s:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure (refused, reset, a provider's bug)
        # is this backend's result, never the sweep's
        healthy, error = False, f"{type(exc).__name__}: {exc}"
    latency_ms = (time.perf_counter() - started) * 1000 if healthy else None
    return HealthHint(backend.group, backend.name, healthy, latency_ms, now, error)


def _points(hints: Sequence[HealthHint]) -> list[MetricPoint]:
    points: list[MetricPoint] = []
    for hint in hints:
        dimensions = {"group": hint.group, "backend": hint.backend}
        healthy = 1.0 if hint.healthy else 0.0
        points.append(MetricPoint("BackendHealthy", healthy, "Count", dimensions))
        if hint.latency_ms is not None:
            points.append(MetricPoint("ProbeLatency", hint.latency_ms, "Milliseconds", dimensions))
    return points


async def health_sweep(
    settings: Settings,
    *,
    store: ControlStore,
    publishers: Sequence[MetricPublisher],
    timeout_s: float,
    now: float,
    registries: Registries | None = None,
) -> list[HealthHint]:
    """Probe every backend of ``settings`` concurrently, each within ``timeout_s``; replace
    the store's hints with the results and publish them as metrics.

    Args:
        settings: the config whose backends to probe (the published one, or a file).
        store: where the hints go (``put_health``).
        publishers: where the metrics go; one that fails is logged and skipped (the hints are
            already stored).
        timeout_s: the time bound of each probe.
        now: Unix time, the hints' ``checked_at``.
        registries: the plugins' registries (default: loaded for ``settings``).

    Returns:
        The hints, in config order (a backend that could not be probed has none).

    Raises:
        ConfigError: the settings name an unknown provider, or options it rejects.
        ServiceUnavailableError: the store cannot be reached (a backend that is down is a
            result, never an error).
    """
    context = ProviderContext()
    builder = CatalogBuilder(registries or plugin_registries(settings), context)
    catalog = builder.catalog(settings)
    backends = [
        b
        for g in catalog.groups
        for b in g.backends
        if isinstance(b.provider, HealthChecked) or b.spec.url
    ]
    await context.start()
    try:
        hints = list(await asyncio.gather(*(_probe(b, context, timeout_s, now) for b in backends)))
    finally:
        await context.close()
    await store.put_health(hints)
    down = [h.backend for h in hints if not h.healthy]
    log.info("health sweep: %d backends probed, down: %s", len(hints), down or "none")
    points = _points(hints)
    for publisher in publishers:
        try:
            await publisher.put(NAMESPACE, points)
        except Exception as exc:  # noqa: BLE001 - metrics are secondary to the stored hints
            log.warning("health metrics not published (%s): %s", type(publisher).__name__, exc)
    return hints
