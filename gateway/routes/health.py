"""Liveness, readiness and Prometheus metrics (public, no API key)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from gateway.state import GatewayState

_json = msgspec.json.Encoder()


def build_health_routes(state: GatewayState) -> list[HTTPRouteHandler]:
    """``/healthz``, ``/readyz`` and ``/metrics`` bound to ``state``."""

    @get("/healthz", media_type="application/json")
    async def healthz() -> Response[Any]:
        """Liveness: the process serves HTTP."""
        return Response(b'{"status":"ok"}', media_type="application/json")

    @get("/readyz", media_type="application/json")
    async def readyz() -> Response[Any]:
        """Readiness: config loaded and every model group has a backend not known to be down."""
        down = [g.name for g in state.catalog.groups if not g.ready]
        body = {
            "status": "unavailable" if down else "ready",
            "models": len(state.catalog.groups),
            "unavailable_models": down,
        }
        return Response(
            _json.encode(body), status_code=503 if down else 200, media_type="application/json"
        )

    @get("/metrics")
    async def metrics() -> Response[Any]:
        """Prometheus exposition (totals across workers when multi-process)."""
        payload, content_type = state.metrics.render()
        return Response(payload, media_type=content_type)

    return [healthz, readyz, metrics]
