"""Build the gateway's ASGI app: ``create_app(settings, *, plugin_manager=None) -> GatewayApp``.

The inference routes are served by the front (:mod:`gateway.routes.front`) through the pipeline
(:mod:`gateway.pipeline.pipeline`); Litestar serves the rest (models, health, admin, metrics,
plugin routes) and owns the lifespan, which owns everything that runs in the background.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pluggy
from litestar import Litestar, Request, Response, Router
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler

from gateway.assembly import build_state
from gateway.auth import Authenticator
from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.control.follow import ConfigFollower
from gateway.control.hints import follow_health_hints
from gateway.dashboard import build_dashboard
from gateway.errors import GatewayError
from gateway.pipeline.pipeline import Pipeline
from gateway.plugins import PluginError, call_lifecycle
from gateway.routes.admin import admin_authorizer, build_admin_routes
from gateway.routes.admin_keys import build_key_admin_routes
from gateway.routes.admin_queues import build_queue_routes
from gateway.routes.admin_spend import build_spend_routes
from gateway.routes.anthropic import build_anthropic_routes
from gateway.routes.errors import error_format_for
from gateway.routes.front import GatewayApp
from gateway.routes.health import build_health_routes
from gateway.routes.openai import CHAT, build_inference_routes, build_model_routes
from gateway.routes.stored import build_stored_routes
from gateway.routing.probes import probe_forever
from gateway.routing.scraper import scrape_forever
from gateway.settings import Settings
from gateway.state import GatewayState

__all__ = ["build_state", "create_app"]

log = logging.getLogger("gateway")
JSON = "application/json"


def _request_id_headers(request: Request[Any, Any, Any]) -> dict[str, str]:
    rid = request.scope.get("state", {}).get("request_id")
    return {"x-request-id": rid} if rid else {}


def _gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    status, body = error_format_for(request.url.path).render(exc)
    headers = {**exc.headers, **_request_id_headers(request)}
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        return _internal_error(request, exc)
    message = exc.detail or "Bad request"
    if status == 404:
        message = f"Unknown route {request.method} {request.url.path}"
    elif status == 413:
        message = "The request body is larger than the gateway's limit."
    body = error_format_for(request.url.path).render_status(status, message)
    headers = {**(exc.headers or {}), **_request_id_headers(request)}
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    failure = GatewayError("The gateway failed to process the request.", code="internal_error")
    status, body = error_format_for(request.url.path).render(failure)
    return Response(body, status_code=status, media_type=JSON, headers=_request_id_headers(request))


def _plugin_route_guard(auth: Authenticator) -> Any:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.url.path.startswith("/v1"):
            await auth.authenticate(connection.headers)

    return guard


def _paths_of(routes: Any) -> set[str]:
    """The paths a plugin's route handler or ``Router`` serves."""
    if isinstance(routes, Router):
        return {route.path for route in routes.routes}
    return set(getattr(routes, "paths", ()))


def start_background_tasks(state: GatewayState) -> None:
    """The app's own background work, in its task group: health probes, engine-metric scrapes
    for groups whose strategy routes on them, and the health sweep's hints when a control
    store is shared."""
    state.background.spawn(probe_forever(state.catalog))
    admissions = state.admissions
    state.background.spawn(
        scrape_forever(state.catalog, on_round=admissions.poke_all if admissions else None)
    )
    if state.control_store is not None and state.settings.control.use_health_hints:
        state.background.spawn(
            follow_health_hints(state.control_store, state.catalog, clock=state.clock)
        )
    if state.dashboard is not None and state.dashboard.board is not None:
        state.dashboard.start()  # the fleet's pages read this replica's numbers


def _lifespan(state: GatewayState) -> Any:
    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await state.providers.start()
        try:
            if state.tracing is not None:
                state.tracing.start()
            async with state.background:
                start_background_tasks(state)
                if state.config_follower is not None:
                    # Before serving: a replica starting now serves the published version.
                    await state.config_follower.start(state.background.spawn)
                try:
                    await state.governance.start(state.background)
                    await state.agents.start()
                    await call_lifecycle(state.plugin_manager, "startup", state, swallow=False)
                    # Everything built so far lives as long as the app: move it out of the
                    # collector's sight so full collections under load only scan per-request
                    # garbage.
                    gc.collect()
                    gc.freeze()
                    yield
                finally:
                    for plugin, exc in await call_lifecycle(
                        state.plugin_manager, "shutdown", state, swallow=True
                    ):
                        log.error("plugin %s failed in shutdown: %s", plugin, exc)
                    # After the last request: settlements, usage records and alerts are
                    # flushed while the background tasks still run.
                    await state.governance.aclose()
                    await state.agents.aclose()
                # Leaving the block drains the off-path writes, then stops the tasks.
        finally:
            await state.providers.close()
            if state.cache is not None:
                await state.cache.aclose()
            await state.store.aclose()
            if state.control_store is not None:
                await state.control_store.aclose()
            state.metrics.mark_process_dead()
            if state.tracing is not None:  # the last spans exported (a blocking flush)
                await anyio.to_thread.run_sync(state.tracing.shutdown)

    return lifespan


def create_app(
    settings: Settings,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> GatewayApp:
    """The gateway as an ASGI app; its lifespan owns the HTTP session, the background work and
    the plugins' lifecycle.

    Raises:
        PluginError, ConfigError: see :func:`gateway.assembly.build_state`.
    """
    state = build_state(settings, plugin_manager, clock=clock)
    if state.control_store is not None and settings.control.follow_config:
        state.config_follower = ConfigFollower(
            state.control_store,
            state.catalog,
            state.builder,
            settings,
            state.metrics.registry,
            poll_interval_s=settings.control.poll_interval_s,
            clock=clock,
        )
    pipeline = Pipeline(state)
    state.agents.bind(pipeline, CHAT)  # agents' steps come back through this pipeline
    authorize = admin_authorizer(state.auth)
    hot_routes = {**build_inference_routes(pipeline), **build_anthropic_routes(pipeline)}
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
        *build_stored_routes(state),
        *build_health_routes(state),
        *build_admin_routes(state),
        *build_queue_routes(state),
        *build_spend_routes(lambda: state.governance.ledger.reader, authorize),
    ]
    state.dashboard, dashboard_routes = build_dashboard(state, authorize)
    handlers += dashboard_routes
    if state.governance.admin is not None:
        handlers += build_key_admin_routes(state.governance.admin, authorize)
    if plugin_routes:
        handlers.append(
            Router(path="/", route_handlers=plugin_routes, guards=[_plugin_route_guard(state.auth)])
        )
    app = Litestar(
        route_handlers=handlers,
        lifespan=[_lifespan(state)],
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
