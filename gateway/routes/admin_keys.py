"""The admin API of virtual keys and tenants, over HTTP (the operations are
:class:`~gateway.governance.admin.KeyAdmin`'s):

- ``POST /admin/keys`` (201: the full key, shown once), ``GET /admin/keys[?tenant=]``;
- ``GET``/``PATCH``/``DELETE /admin/keys/{key_id}`` (``DELETE`` revokes), and
  ``POST /admin/keys/{key_id}/revoke``;
- ``POST /admin/tenants`` (201), ``GET /admin/tenants``;
- ``GET``/``PATCH``/``DELETE /admin/tenants/{name}``.

JSON in and out. Every handler first calls ``authorize(headers)``, which returns the acting
:class:`~gateway.identity.Principal` (the master key, or a virtual key: tenant admins) or raises;
errors are :class:`~gateway.errors.GatewayError` s, which the app renders as OpenAI's envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.handlers import HTTPRouteHandler

from gateway.governance.admin import KeyAdmin
from gateway.identity import Principal

Authorize = Callable[[Mapping[str, str]], Awaitable[Principal]]
AnyRequest = Request[Any, Any, Any]

_json = msgspec.json.Encoder()


def _answer(body: Any, status: int = 200) -> Response[Any]:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def build_key_admin_routes(admin: KeyAdmin, authorize: Authorize) -> list[HTTPRouteHandler]:
    """The key and tenant admin routes, served by ``admin``, guarded by ``authorize``."""

    async def actor(request: AnyRequest) -> Principal:
        return await authorize(request.headers)

    @post("/admin/keys", status_code=201)
    async def create_key(request: AnyRequest) -> Response[Any]:
        who = await actor(request)
        return _answer(await admin.create_key(who, await request.body()), 201)

    @get("/admin/keys")
    async def list_keys(request: AnyRequest) -> Response[Any]:
        who = await actor(request)
        tenant = request.query_params.get("tenant") or None
        return _answer(await admin.list_keys(who, tenant))

    @get("/admin/keys/{key_id:str}")
    async def show_key(request: AnyRequest) -> Response[Any]:
        key_id = str(request.path_params["key_id"])
        return _answer(await admin.show_key(await actor(request), key_id))

    @patch("/admin/keys/{key_id:str}")
    async def update_key(request: AnyRequest) -> Response[Any]:
        key_id = str(request.path_params["key_id"])
        who = await actor(request)
        return _answer(await admin.update_key(who, key_id, await request.body()))

    @delete("/admin/keys/{key_id:str}", status_code=200)
    async def delete_key(request: AnyRequest) -> Response[Any]:
        key_id = str(request.path_params["key_id"])
        return _answer(await admin.revoke_key(await actor(request), key_id))

    @post("/admin/keys/{key_id:str}/revoke", status_code=200)
    async def revoke_key(request: AnyRequest) -> Response[Any]:
        key_id = str(request.path_params["key_id"])
        return _answer(await admin.revoke_key(await actor(request), key_id))

    @post("/admin/tenants", status_code=201)
    async def create_tenant(request: AnyRequest) -> Response[Any]:
        who = await actor(request)
        return _answer(await admin.create_tenant(who, await request.body()), 201)

    @get("/admin/tenants")
    async def list_tenants(request: AnyRequest) -> Response[Any]:
        return _answer(await admin.list_tenants(await actor(request)))

    @get("/admin/tenants/{name:str}")
    async def show_tenant(request: AnyRequest) -> Response[Any]:
        name = str(request.path_params["name"])
        return _answer(await admin.show_tenant(await actor(request), name))

    @patch("/admin/tenants/{name:str}")
    async def update_tenant(request: AnyRequest) -> Response[Any]:
        name = str(request.path_params["name"])
        who = await actor(request)
        return _answer(await admin.update_tenant(who, name, await request.body()))

    @delete("/admin/tenants/{name:str}", status_code=200)
    async def delete_tenant(request: AnyRequest) -> Response[Any]:
        name = str(request.path_params["name"])
        return _answer(await admin.delete_tenant(await actor(request), name))

    return [
        create_key,
        list_keys,
        show_key,
        update_key,
        delete_key,
        revoke_key,
        create_tenant,
        list_tenants,
        show_tenant,
        update_tenant,
        delete_tenant,
    ]
