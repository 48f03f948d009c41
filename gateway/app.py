"""Build the gateway's ASGI app: ``create_app(settings, *, plugin_manager=None, clock=None)``.

The inference routes are served by the front (:mod:`gateway.routes.front`); Litestar serves the
rest (models, health, admin, metrics, plugin routes) and owns the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pluggy
from litestar import Litestar, Request, Response, Router
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler

from gateway.auth import Authenticator
from gateway.cache.tiered import TieredCache
from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.config_loader import ConfigError
from gateway.errors import (
    ErrorBody,
    ErrorEnvelope,
    GatewayError,
    anthropic_error_body,
    anthropic_error_json,
    anthropic_status_of,
    status_of,
)
from gateway.plugins import (
    PluginError,
    Registries,
    call_lifecycle,
    collect_registries,
    make_plugin_manager,
)
from gateway.providers.base import ProviderContext
from gateway.routes.admin import build_admin_routes
from gateway.routes.anthropic import build_anthropic_routes
from gateway.routes.front import GatewayApp
from gateway.routes.health import build_health_routes
from gateway.routes.openai import build_inference_routes, build_model_routes
from gateway.routing.backends import build_catalog
from gateway.routing.probes import probe_forever
from gateway.routing.scraper import scrape_forever
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.telemetry.metrics import GatewayMetrics

log = logging.getLogger("gateway")

_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def _request_id_headers(request: Request[Any, Any, Any]) -> dict[str, str]:
    rid = request.scope.get("state", {}).get("request_id")
    return {"x-request-id": rid} if rid else {}


def _is_anthropic_route(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith("/v1/messages")


def _gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    if _is_anthropic_route(request):
        return Response(
            anthropic_error_json(exc),
            status_code=anthropic_status_of(exc),
            media_type="application/json",
            headers={**exc.headers, **_request_id_headers(request)},
        )
    return Response(
        exc.to_json(),
        status_code=status_of(exc),
        media_type="application/json",
        headers={**exc.headers, **_request_id_headers(request)},
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        return _internal_error(request, exc)
    message = exc.detail or "Bad request"
    if status == 404:
        message = f"Unknown route {request.method} {request.url.path}"
    elif status == 413:
        message = "The request body is larger than the gateway's limit."
    headers = {**(exc.headers or {}), **_request_id_headers(request)}
    if _is_anthropic_route(request):
        return Response(
            anthropic_error_body(status, message),
            status_code=status,
            media_type="application/json",
            headers=headers,
        )
    error_type = _ERROR_TYPES.get(status, "invalid_request_error")
    body = ErrorEnvelope(ErrorBody(message, error_type, None, None))
    return Response(body, status_code=status, headers=headers)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = ErrorEnvelope(
        ErrorBody("The gateway failed to process the request.", "api_error", None, "internal_error")
    )
    return Response(body, status_code=500, headers=_request_id_headers(request))


def _plugin_route_guard(auth: Authenticator) -> Any:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.url.path.startswith("/v1"):
            auth.check(connection.headers.get("authorization"))

    return guard


def _paths_of(routes: Any) -> set[str]:
    """The paths a plugin's route handler or ``Router`` serves."""
    if isinstance(routes, Router):
        return {route.path for route in routes.routes}
    return set(getattr(routes, "paths", ()))


def start_background_tasks(state: GatewayState) -> list[asyncio.Task[None]]:
    """The app's own background work: health probes, and engine-metric scrapes for groups
    whose strategy routes on them."""
    return [
        asyncio.create_task(probe_forever(state.catalog), name="health-probes"),
        asyncio.create_task(
            scrape_forever(state.providers.http, state.catalog), name="engine-scraper"
        ),
    ]


def _takes_clock(factory: Any) -> bool:
    """Whether a cache-backend factory accepts the ``clock`` keyword (built-in ``memory`` does;
    others, Redis's TTLs live in the server, are called with their options only)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "clock" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
    )


def build_cache(
    settings: Settings,
    registries: Registries,
    metrics: GatewayMetrics,
    clock: Clock = SYSTEM_CLOCK,
) -> TieredCache | None:
    """The response cache's tiers, when some model group caches; every tier that reads time
    (and the tiers' own bookkeeping) reads ``clock``.

    Raises:
        ConfigError: an unknown cache backend or options it rejects (naming the field).
    """
    if not any(g.cache.enabled for g in settings.models):
        return None
    tiers = []
    for i, tier in enumerate(settings.cache.tiers):
        factory = registries.cache_backends.get(tier.backend)
        if factory is None:
            raise ConfigError(
                settings.source,
                f"cache.tiers[{i}].backend",
                f"unknown cache backend `{tier.backend}`; registered: "
                f"{', '.join(registries.cache_backends.names()) or 'none'}",
            )
        try:
            extra = {"clock": clock} if _takes_clock(factory) else {}
            tiers.append((tier.backend, factory(**tier.options, **extra)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(settings.source, f"cache.tiers[{i}].options", str(exc)) from None
    return TieredCache(
        tiers,
        settings.cache.retry_after_s,
        on_error=lambda name: metrics.child(metrics.cache_errors, name).inc(),
        clock=clock,
    )


def build_state(
    settings: Settings,
    plugin_manager: pluggy.PluginManager | None = None,
    clock: Clock | None = None,
) -> GatewayState:
    """Load plugins and build everything the app needs, without starting anything; what
    expires (breakers, latency averages, cache entries) reads ``clock`` (the real one unless
    given).

    Raises:
        PluginError: a plugin failed to load or register.
        ConfigError: the settings name an unknown provider or strategy, or bad options.
    """
    pm = plugin_manager or make_plugin_manager(settings.plugins.disabled)
    registries = collect_registries(pm)
    providers = ProviderContext()
    clock = clock or SYSTEM_CLOCK
    catalog = build_catalog(settings, registries, providers, clock)
    metrics = GatewayMetrics()
    cache = build_cache(settings, registries, metrics, clock)
    keys = [
        *settings.auth.api_keys,
        *([settings.auth.master_key] if settings.auth.master_key else []),
    ]
    return GatewayState(
        settings=settings,
        plugin_manager=pm,
        registries=registries,
        catalog=catalog,
        providers=providers,
        metrics=metrics,
        auth=Authenticator(keys),
        cache=cache,
    )


def create_app(
    settings: Settings,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
    clock: Clock | None = None,
) -> GatewayApp:
    """The gateway as an ASGI app; its lifespan owns the HTTP session and plugin lifecycle.
    ``clock``: the time that expiring state reads (tests pass a ``ManualClock``).

    Raises:
        PluginError, ConfigError: see :func:`build_state`.
    """
    state = build_state(settings, plugin_manager, clock)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await state.providers.start()
        background = start_background_tasks(state)
        try:
            await call_lifecycle(state.plugin_manager, "startup", state, swallow=False)
            # Everything built so far lives as long as the app: move it out of the collector's
            # sight so full collections under load only scan per-request garbage.
            gc.collect()
            gc.freeze()
            yield
        finally:
            for plugin, exc in await call_lifecycle(
                state.plugin_manager, "shutdown", state, swallow=True
            ):
                log.error("plugin %s failed in shutdown: %s", plugin, exc)
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await state.providers.close()
            if state.cache is not None:
                await state.cache.aclose()
            state.metrics.mark_process_dead()

    hot_routes = {**build_inference_routes(state), **build_anthropic_routes(state)}
    for name in state.registries.routes:
        taken = _paths_of(state.registries.routes.get(name)) & hot_routes.keys()
        if taken:
            raise PluginError(
                f"plugin `{state.registries.routes.owner(name)}` registered route `{name}` on "
                f"{', '.join(sorted(taken))}, which the gateway serves itself"
            )
    plugin_routes: list[Any] = [state.registries.routes.get(n) for n in state.registries.routes]
    handlers: list[Any] = [
        *build_model_routes(state),
        *build_health_routes(state),
        *build_admin_routes(state),
    ]
    if plugin_routes:
        handlers.append(
            Router(path="/", route_handlers=plugin_routes, guards=[_plugin_route_guard(state.auth)])
        )
    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=None,
        debug=False,
    )
    app.state.gateway = state
    return GatewayApp(app, hot_routes)
