"""The key and tenant admin API served from one HTTP request (the keys Lambda function): the
same routes, operations and JSON as the gateway's (:mod:`gateway.routes.admin_keys`, whose
operations are :class:`~gateway.governance.admin.KeyAdmin`'s), and its errors in OpenAI's
envelope, rendered by the gateway's own renderer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from gateway.errors import GatewayError, MethodNotAllowedError, NotFoundError
from gateway.governance.admin import KeyAdmin
from gateway.identity import Principal
from gateway.routes.errors import OPENAI_ERRORS
from gateway_aws.lambda_events import HttpRequest

Authorize = Callable[[Mapping[str, str]], Awaitable[Principal]]
_encode = msgspec.json.Encoder().encode


async def serve_key_admin(
    admin: KeyAdmin, authorize: Authorize, request: HttpRequest
) -> tuple[int, bytes]:
    """Answer ``request`` as the gateway's ``/admin/keys`` and ``/admin/tenants`` routes do.

    Returns:
        The status and the JSON body (201 for a creation, an error envelope for a refusal).
    """
    try:
        status, body = await _route(admin, authorize, request)
    except GatewayError as exc:
        return OPENAI_ERRORS.render(exc)
    return status, _encode(body)


async def _route(
    admin: KeyAdmin, authorize: Authorize, request: HttpRequest
) -> tuple[int, dict[str, Any]]:
    parts = [p for p in request.path.split("/") if p]
    method = request.method
    if parts[:1] != ["admin"] or len(parts) < 2 or parts[1] not in ("keys", "tenants"):
        raise NotFoundError(f"No route `{request.path}`.")
    # Authorized before anything else is looked at, as by the gateway's routes.
    who = await authorize(request.headers)
    kind, rest = parts[1], parts[2:]
    if kind == "keys":
        if not rest:
            if method == "POST":
                return 201, await admin.create_key(who, request.body)
            if method == "GET":
                return 200, await admin.list_keys(who, request.query.get("tenant") or None)
        elif len(rest) == 1:
            if method == "GET":
                return 200, await admin.show_key(who, rest[0])
            if method == "PATCH":
                return 200, await admin.update_key(who, rest[0], request.body)
            if method == "DELETE":
                return 200, await admin.revoke_key(who, rest[0])
        elif len(rest) == 2 and rest[1] == "revoke":
            if method == "POST":
                return 200, await admin.revoke_key(who, rest[0])
        else:
            raise NotFoundError(f"No route `{request.path}`.")
    elif not rest:
        if method == "POST":
            return 201, await admin.create_tenant(who, request.body)
        if method == "GET":
            return 200, await admin.list_tenants(who)
    elif len(rest) == 1:
        if method == "GET":
            return 200, await admin.show_tenant(who, rest[0])
        if method == "PATCH":
            return 200, await admin.update_tenant(who, rest[0], request.body)
        if method == "DELETE":
            return 200, await admin.delete_tenant(who, rest[0])
    else:
        raise NotFoundError(f"No route `{request.path}`.")
    raise MethodNotAllowedError(f"Method {method} is not allowed on `{request.path}`.")
