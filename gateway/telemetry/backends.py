"""Backend state as Prometheus reads it, refreshed from the live catalog at each scrape.

The request path sets ``gateway_backend_breaker_state`` after each exchange, so without traffic
the gauge kept the last state it saw: an open breaker that has since cooled down to half-open
(or a backend that went down between requests) was never shown. Reading the catalog when
``/metrics`` is served makes the series say what routing sees now, which is what the
"breaker open" and "every backend of a group down" alerts need.

With several worker processes, each worker refreshes its own files when it serves a scrape;
``gateway_backend_up`` is merged with ``max`` (up when some worker last saw it up), so a group
reads as down once every worker that was scraped since saw all of its backends down.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.routing.backends import ModelGroup
from gateway.telemetry.metrics import GatewayMetrics

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""``gateway_backend_breaker_state``'s value per breaker state."""


class BackendGauges:
    """Writes ``gateway_backend_up`` and ``gateway_backend_breaker_state`` for every backend of
    the catalog.

    A backend that left the catalog must not keep an alert on: its ``up`` series is set to 1
    and removed (with several workers the shared files keep the 1: they cannot drop a series),
    and its breaker series reads closed (0), reset rather than removed because the request
    path caches those children."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._shown: set[tuple[str, str]] = set()

    def refresh(self, groups: Iterable[ModelGroup]) -> None:
        """Set both gauges from ``groups`` as they are now (called before each render)."""
        m = self._metrics
        shown: set[tuple[str, str]] = set()
        for group in groups:
            for backend in group.backends:
                labels = (group.name, backend.name)
                shown.add(labels)
                m.backend_up.labels(*labels).set(1 if backend.available else 0)
                m.child(m.breaker_state, *labels).set(BREAKER_STATES[backend.breaker])
        for gone in self._shown - shown:
            m.backend_up.labels(*gone).set(1)
            m.backend_up.remove(*gone)
            m.child(m.breaker_state, *gone).set(0)
        self._shown = shown
