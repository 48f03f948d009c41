"""Who may see the dashboard: the master key or a tenant admin key, presented as a bearer
token or once through the login form, which sets a session cookie.

The cookie holds no key: it is ``<payload>.<signature>``, the payload saying whose session it
is (the key's public id, admin or which tenant's admin) and until when, signed with HMAC-SHA-256
under a secret derived from the master key, so every replica of a fleet accepts the sessions of
the others. Without a master key the secret is random per process (tenant admins then log in
to each replica). The cookie is ``HttpOnly`` and ``SameSite=Strict``, scoped to
``/dashboard``, ``Secure`` when the request came over HTTPS.

With no key configured at all, the page is closed (403) unless
``dashboard.allow_unauthenticated_loopback`` is set, the gateway binds a loopback address and
the caller is on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import msgspec

from gateway.errors import AuthenticationError, PermissionDeniedError
from gateway.identity import Principal
from gateway.settings import Settings
from gateway.settings_dashboard import is_loopback_host

COOKIE = "gateway_dashboard"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: ``tenant`` None sees everything (the master key, or an open
    loopback page); a tenant admin sees its own tenant's spend, budgets and alerts."""

    key_id: str | None
    tenant: str | None = None


class _Session(msgspec.Struct, frozen=True):
    key_id: str | None
    tenant: str | None
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Signs and checks session cookies.

    Args:
        master_key: the secret is derived from it (None: a random one for this process).
        ttl_s: how long a session lasts.
    """

    def __init__(self, master_key: str | None, ttl_s: float) -> None:
        seed = master_key.encode() if master_key else secrets.token_bytes(32)
        self._secret = hmac.new(seed, b"gateway dashboard session v1", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def issue(self, viewer: Viewer, now: float | None = None) -> str:
        """A cookie value for ``viewer``'s session."""
        expires = (time.time() if now is None else now) + self.ttl_s
        payload = _b64(msgspec.json.encode(_Session(viewer.key_id, viewer.tenant, expires)))
        return f"{payload}.{self._sign(payload)}"

    def check(self, cookie: str, now: float | None = None) -> Viewer | None:
        """The viewer of a cookie value, or None when it is forged, malformed or expired."""
        payload, _, signature = cookie.partition(".")
        # Bytes: compare_digest refuses str with non-ASCII characters (a client's cookie).
        expected = self._sign(payload).encode()
        if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
            return None
        try:
            session = msgspec.json.decode(_unb64(payload), type=_Session)
        except (ValueError, msgspec.DecodeError):
            return None
        if session.expires < (time.time() if now is None else now):
            return None
        return Viewer(session.key_id, session.tenant)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())


Authorize = Callable[[Mapping[str, str]], Awaitable[Principal]]


def viewer_of(principal: Principal) -> Viewer:
    """The dashboard's viewer for an admin principal (see :func:`admin_authorizer`)."""
    return Viewer(principal.key_id, None if principal.admin else principal.tenant_admin)


class DashboardAccess:
    """The dashboard's gate.

    Args:
        settings: the app's settings (``auth``, ``server.host``, ``dashboard``).
        authorize: the admin API's check (the master key or a tenant admin key).
        keys_configured: whether any key can authenticate at all.
    """

    def __init__(self, settings: Settings, authorize: Authorize, keys_configured: bool) -> None:
        self.sessions = Sessions(settings.auth.master_key, settings.dashboard.session_ttl_s)
        self._authorize = authorize
        self._keys = keys_configured
        self._open_on_loopback = (
            settings.dashboard.allow_unauthenticated_loopback
            and is_loopback_host(settings.server.host)
        )

    async def login(self, key: str) -> Viewer:
        """The viewer presenting ``key`` in the login form.

        Raises:
            AuthenticationError: not the master key or a tenant admin key.
        """
        try:
            return viewer_of(await self._authorize({"authorization": f"Bearer {key}"}))
        except (AuthenticationError, PermissionDeniedError):
            raise AuthenticationError("That key may not open the dashboard.") from None

    async def viewer(
        self, headers: Mapping[str, str], cookies: Mapping[str, str], client_host: str | None
    ) -> Viewer:
        """The viewer of a request: a bearer token, else the session cookie.

        Raises:
            AuthenticationError: neither is valid (401).
            PermissionDeniedError: no key is configured and the page is not open on loopback
                (403), or the bearer key is valid but not an admin's.
        """
        if not self._keys:
            if self._open_on_loopback and client_host and is_loopback_host(client_host):
                return Viewer(None)
            raise PermissionDeniedError(
                "The dashboard needs `auth.master_key` (or, for a loopback bind only, "
                "`dashboard.allow_unauthenticated_loopback`).",
                code="dashboard_closed",
            )
        # A bearer token or an API key is a key to check; any other Authorization (a proxy's
        # Basic credentials) leaves the session cookie to decide.
        if headers.get("authorization", "")[:7].lower() == "bearer " or headers.get("x-api-key"):
            return viewer_of(await self._authorize(headers))
        cookie = cookies.get(COOKIE)
        viewer = self.sessions.check(cookie) if cookie else None
        if viewer is None:
            raise AuthenticationError(
                "Log in at /dashboard or send `Authorization: Bearer <admin key>`.",
                code="dashboard_login",
            )
        return viewer
