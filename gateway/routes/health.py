"""Probes and Prometheus metrics (public, no API key).

- ``GET /healthz``: liveness, the process serves HTTP (restart it when this fails);
- ``GET /readyz`` and ``GET /health``: readiness, 200 when every model group has a backend not
  known to be down, else 503. ``/health`` is the route vLLM serves with these semantics, which
  benchmark and orchestration clients of the vLLM ecosystem check before sending load;
- ``GET /version``: ``{"version": ...}``, as vLLM serves its own;
- ``GET /metrics``: Prometheus exposition.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from gateway import __version__
from gateway.codec import encode
from gateway.state import GatewayState
from gateway.telemetry.backends import BackendGauges

JSON = "application/json"


def build_health_routes(state: GatewayState) -> list[HTTPRouteHandler]:
    """The probes, ``/version`` and ``/metrics`` bound to ``state``."""
    backend_gauges = BackendGauges(state.metrics)

    @get("/healthz", media_type=JSON)
    async def healthz() -> Response[Any]:
        """Liveness: the process serves HTTP."""
        return Response(b'{"status":"ok"}', media_type=JSON)

    @get(["/readyz", "/health"], media_type=JSON)
    async def readyz() -> Response[Any]:
        """Readiness: config loaded and every model group has a backend not known to be down."""
        down = [g.name for g in state.catalog.groups if not g.ready]
        body = {
            "status": "unavailable" if down else "ready",
            "models": len(state.catalog.groups),
            "unavailable_models": down,
        }
        return Response(encode(body), status_code=503 if down else 200, media_type=JSON)

    @get("/version", media_type=JSON)
    async def version() -> Response[Any]:
        """The gateway's version."""
        return Response(encode({"version": __version__}), media_type=JSON)

    @get("/metrics")
    async def metrics() -> Response[Any]:
        """Prometheus exposition (totals across workers when multi-process), with the
        backends' state read from the catalog now."""
        backend_gauges.refresh(state.catalog.groups)
        payload, content_type = state.metrics.render()
        return Response(payload, media_type=content_type)

    return [healthz, readyz, version, metrics]
