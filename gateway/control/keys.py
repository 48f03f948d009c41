"""The keys function: the key and tenant operations of the admin API, without a web server.

An HTTP request (method, path, query, headers, body) from any front end (API Gateway's HTTP API
in the Lambda handler, a test) is routed to the same :class:`~gateway.governance.admin.KeyAdmin`
operations as the gateway's own ``/admin/keys`` and ``/admin/tenants`` routes
(:mod:`gateway.routes.admin_keys`), so validation, roles, the audit log and the JSON are the
same; errors are OpenAI's envelope with the same statuses. The caller is authorized the same
way: the master key, or a tenant admin key.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.assembly import build_state
from gateway.config_loader import ConfigError
from gateway.errors import GatewayError, MethodNotAllowedError, NotFoundError, status_of
from gateway.governance.admin import KeyAdmin
from gateway.identity import Principal
from gateway.routes.admin import admin_authorizer
from gateway.settings import Settings

Authorize = Callable[[Mapping[str, str]], Awaitable[Principal]]
Operation = Callable[
    [KeyAdmin, Principal, Mapping[str, str], Mapping[str, str], bytes], Awaitable[Any]
]

_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class KeysAnswer:
    """The HTTP answer: status, JSON body, headers."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


def _route(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$")


# (method, path, status, operation): the table of /admin/keys and /admin/tenants.
_ROUTES: list[tuple[str, re.Pattern[str], int, Operation]] = [
    ("POST", _route("/admin/keys"), 201, lambda a, w, p, q, b: a.create_key(w, b)),
    (
        "GET",
        _route("/admin/keys"),
        200,
        lambda a, w, p, q, b: a.list_keys(w, q.get("tenant") or None),
    ),
    ("GET", _route("/admin/keys/{key_id}"), 200, lambda a, w, p, q, b: a.show_key(w, p["key_id"])),
    (
        "PATCH",
        _route("/admin/keys/{key_id}"),
        200,
        lambda a, w, p, q, b: a.update_key(w, p["key_id"], b),
    ),
    (
        "DELETE",
        _route("/admin/keys/{key_id}"),
        200,
        lambda a, w, p, q, b: a.revoke_key(w, p["key_id"]),
    ),
    (
        "POST",
        _route("/admin/keys/{key_id}/revoke"),
        200,
        lambda a, w, p, q, b: a.revoke_key(w, p["key_id"]),
    ),
    ("POST", _route("/admin/tenants"), 201, lambda a, w, p, q, b: a.create_tenant(w, b)),
    ("GET", _route("/admin/tenants"), 200, lambda a, w, p, q, b: a.list_tenants(w)),
    (
        "GET",
        _route("/admin/tenants/{name}"),
        200,
        lambda a, w, p, q, b: a.show_tenant(w, p["name"]),
    ),
    (
        "PATCH",
        _route("/admin/tenants/{name}"),
        200,
        lambda a, w, p, q, b: a.update_tenant(w, p["name"], b),
    ),
    (
        "DELETE",
        _route("/admin/tenants/{name}"),
        200,
        lambda a, w, p, q, b: a.delete_tenant(w, p["name"]),
    ),
]


def _error(exc: GatewayError) -> KeysAnswer:
    return KeysAnswer(
        status_of(exc), exc.to_json(), {"content-type": "application/json", **exc.headers}
    )


async def handle_keys(
    admin: KeyAdmin,
    authorize: Authorize,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
) -> KeysAnswer:
    """Answer one admin request (``headers`` with lower-case names). Never raises for what a
    client sends: unknown routes are 404, wrong methods 405, refusals their status."""
    method = method.upper()
    allowed: list[str] = []
    try:
        for verb, pattern, status, operation in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if verb != method:
                allowed.append(verb)
                continue
            actor = await authorize(headers)
            result = await operation(admin, actor, match.groupdict(), query, body)
            return KeysAnswer(status, _json.encode(result))
        if allowed:
            raise MethodNotAllowedError(
                f"Method {method} is not allowed on {path}.", headers={"allow": ", ".join(allowed)}
            )
        raise NotFoundError(f"Unknown route {method} {path}")
    except GatewayError as exc:
        return _error(exc)


@asynccontextmanager
async def keys_service(settings: Settings) -> AsyncIterator[tuple[KeyAdmin, Authorize]]:
    """The key admin and its authorizer for ``settings``' key store, for the time of the
    block (one Lambda invocation, one CLI run): audit records are flushed to the usage sinks
    before it ends.

    Raises:
        ConfigError: no admin API: ``auth.master_key`` is not set.
    """
    state = build_state(settings)
    governance = state.governance
    if governance.admin is None:
        raise ConfigError(
            settings.source, "auth.master_key", "the keys function needs the master key set"
        )
    async with state.background:
        await governance.ledger.start()
        try:
            yield governance.admin, admin_authorizer(state.auth)
        finally:
            await governance.aclose()
