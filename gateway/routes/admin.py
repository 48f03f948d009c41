"""Runtime administration of backends, guarded by the master key (``auth.master_key``).

- ``GET /admin/backends``: every backend with its live state.
- ``POST /admin/backends/{name}/drain``: stop routing new requests to it; in-flight ones finish.
- ``POST /admin/backends/{name}/undrain``: route to it again.
- ``DELETE /admin/backends/{name}``: drain and remove it; in-flight requests still finish.
- ``POST /admin/models/{model}/backends``: add a backend (a backend entry of the config, as JSON).
- ``POST /admin/reload``: re-read the config file and apply its backend changes
  (:mod:`gateway.reload`).
- ``GET /admin/queues``: the admission queues of the model groups that have a
  ``scheduling:`` section (:mod:`gateway.routes.admin_queues`).
- ``GET /admin/config``: the published config version this replica applied from the shared
  store (:mod:`gateway.control.follow`), what it did not apply live, and the last version it
  refused.

Without a master key configured the admin API answers 403; callers whose
:class:`~gateway.identity.Principal` is not an admin get 401.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import msgspec
from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler

from gateway.auth import Authenticator
from gateway.config_loader import ConfigError, load_settings
from gateway.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from gateway.identity import Principal
from gateway.reload import apply_settings
from gateway.routing.backends import Backend, ModelGroup
from gateway.settings import BackendSettings
from gateway.state import GatewayState

_json = msgspec.json.Encoder()


def admin_authorizer(auth: Authenticator) -> Callable[[Mapping[str, str]], Awaitable[Principal]]:
    """The caller of an admin route of the key, tenant and spend APIs: the master key (all of
    them) or a tenant admin key (its own tenant's); anyone else gets 401 or 403."""

    async def authorize(headers: Mapping[str, str]) -> Principal:
        if not auth.enabled:
            raise PermissionDeniedError(
                "The admin API needs `auth.master_key` configured.", code="admin_disabled"
            )
        principal = await auth.authenticate(headers)
        if principal.admin or principal.tenant_admin is not None:
            return principal
        raise PermissionDeniedError(
            "This key may not use the admin API: use the master key or a tenant admin key.",
            code="admin_only",
        )

    return authorize


def describe(group: ModelGroup, backend: Backend) -> dict[str, Any]:
    """A backend's configuration and live state."""
    return {
        "model": group.name,
        "name": backend.name,
        "url": backend.spec.url,
        "upstream_model": backend.model,
        "provider": type(backend.provider).__name__,
        "in_flight": backend.in_flight,
        "available": backend.available,
        "healthy": backend.health.healthy,
        "hinted_down": backend.health.hinted_down,
        "breaker": backend.breaker,
        "draining": backend.draining,
        "latency_s": backend.latency_s,
        "error_rate": backend.error_rate,
    }


def master_key_authorizer(
    state: GatewayState,
) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """The check of a master-key-only admin route: 403 without ``auth.master_key``
    configured, 401 for any caller but the master key."""
    master = state.settings.auth.master_key

    async def authorize(request: Request[Any, Any, Any]) -> None:
        if not master:
            raise PermissionDeniedError("The admin API needs `auth.master_key` configured.")
        try:
            admin = (await state.auth.authenticate(request.headers)).admin
        except AuthenticationError:
            admin = False
        if not admin:
            raise AuthenticationError("The admin API needs the master key.")

    return authorize


def build_admin_routes(state: GatewayState) -> list[HTTPRouteHandler]:
    """The admin routes bound to ``state``."""
    authorize = master_key_authorizer(state)

    def find(name: str) -> tuple[ModelGroup, Backend]:
        for group in state.catalog.groups:
            for backend in group.backends:
                if backend.name == name:
                    return group, backend
        raise NotFoundError(f"No backend named `{name}`.", param="name")

    def answer(body: Any, status: int = 200) -> Response[Any]:
        return Response(_json.encode(body), status_code=status, media_type="application/json")

    @get("/admin/backends")
    async def list_backends(request: Request[Any, Any, Any]) -> Response[Any]:
        await authorize(request)
        return answer(
            {"backends": [describe(g, b) for g in state.catalog.groups for b in g.backends]}
        )

    async def set_draining(request: Request[Any, Any, Any], draining: bool) -> Response[Any]:
        await authorize(request)
        group, backend = find(str(request.path_params["name"]))
        backend.draining = draining
        return answer(describe(group, backend))

    @post("/admin/backends/{name:str}/drain", status_code=200)
    async def drain(request: Request[Any, Any, Any]) -> Response[Any]:
        return await set_draining(request, True)

    @post("/admin/backends/{name:str}/undrain", status_code=200)
    async def undrain(request: Request[Any, Any, Any]) -> Response[Any]:
        return await set_draining(request, False)

    @delete("/admin/backends/{name:str}", status_code=200)
    async def remove(request: Request[Any, Any, Any]) -> Response[Any]:
        await authorize(request)
        name = str(request.path_params["name"])
        group, backend = find(name)
        # The last backend only on purpose (a node agent removing its engine): the group then
        # answers 503 until one is added.
        if len(group.backends) == 1 and request.query_params.get("force") != "true":
            raise InvalidRequestError(
                f"`{name}` is the last backend of `{group.name}` (add `?force=true` to remove "
                "it anyway).",
                param="name",
            )
        backend.draining = True
        # In-flight requests hold their own reference to the backend and finish normally.
        group.backends = [b for b in group.backends if b is not backend]
        return answer(describe(group, backend))

    @post("/admin/models/{model:str}/backends", status_code=201)
    async def add(request: Request[Any, Any, Any]) -> Response[Any]:
        await authorize(request)
        model = str(request.path_params["model"])
        group = state.catalog.resolve(model)
        try:
            settings = msgspec.json.decode(await request.body(), type=BackendSettings)
            backend = state.builder.backend(
                settings, group.settings, len(group.backends), "request body"
            )
        except msgspec.ValidationError as exc:
            raise InvalidRequestError(f"Invalid backend: {exc}") from None
        except msgspec.DecodeError:
            raise InvalidRequestError("The request body is not valid JSON.") from None
        except RecursionError:
            raise InvalidRequestError("The request body nests too deeply.") from None
        except ConfigError as exc:
            raise InvalidRequestError(exc.problem, param=exc.field) from None
        if any(backend.name == b.name for g in state.catalog.groups for b in g.backends):
            raise InvalidRequestError(f"A backend named `{backend.name}` exists.", param="name")
        group.backends = [*group.backends, backend]
        return answer(describe(group, backend), 201)

    @post("/admin/reload", status_code=200)
    async def reload(request: Request[Any, Any, Any]) -> Response[Any]:
        await authorize(request)
        path = state.settings.source
        if not await anyio.Path(path).is_file():
            raise InvalidRequestError(f"The gateway was not started from a config file ({path}).")
        try:
            settings = load_settings(path)
            report = apply_settings(state.catalog, settings, state.builder)
        except ConfigError as exc:
            raise InvalidRequestError(str(exc), param=exc.field) from None
        return answer(dataclasses.asdict(report))

    @get("/admin/config")
    async def config(request: Request[Any, Any, Any]) -> Response[Any]:
        await authorize(request)
        follower = state.config_follower
        applied = follower.applied if follower else None
        rejected = follower.rejected if follower else None
        return answer(
            {
                "following": follower is not None,
                "version": applied.version if applied else None,
                "digest": applied.digest if applied else None,
                "source": applied.source if applied else state.settings.source,
                "applied_at": applied.applied_at if applied else None,
                "needs_restart": applied.needs_restart if applied else [],
                "last_refused": dataclasses.asdict(rejected) if rejected else None,
            }
        )

    return [list_backends, drain, undrain, remove, add, reload, config]
