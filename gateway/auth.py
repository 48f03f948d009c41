"""Client authentication: who is calling, as a :class:`~gateway.identity.Principal`.

This module is the only place that reads ``Authorization`` (or Anthropic's ``x-api-key``).
Static keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every
configured key without early exit, so response time does not reveal how much of a key matched.
Virtual keys (``sk-gw-<id>-<secret>``, with tenants, limits and budgets) are looked up by their
public id in the key directory (:mod:`gateway.governance.directory`), which verifies the secret's
HMAC in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Protocol

from gateway.errors import AuthenticationError
from gateway.governance.records import KEY_PREFIX
from gateway.identity import ANONYMOUS, Principal, key_id_of


class VirtualKeys(Protocol):
    """Resolves a presented virtual key (``sk-gw-...``) to its caller."""

    async def authenticate(self, presented: str) -> Principal:
        """The caller; raises AuthenticationError (401) or PermissionDeniedError (403)."""
        ...


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key a request presents: ``Authorization: Bearer <key>``, else ``x-api-key``."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and (token := token.strip()):
            return token
    api_key = headers.get("x-api-key")
    return api_key.strip() or None if api_key else None


class Authenticator:
    """Turns a request's headers into its :class:`Principal`.

    Args:
        keys: the API keys that may call the data plane.
        master_key: the key that may also call the admin API (it may call the data plane too).
        virtual: the virtual keys' directory; None when governance has no key store in use.
    """

    def __init__(
        self,
        keys: Iterable[str],
        master_key: str | None = None,
        virtual: VirtualKeys | None = None,
    ) -> None:
        entries = [k for k in keys if k]
        if master_key:
            entries.append(master_key)
        # One Principal per key, made once: authenticating is on every request's path.
        self._known = [(_digest(k), _principal(k, admin=k == master_key)) for k in entries]
        self._virtual = virtual

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (otherwise every caller is anonymous)."""
        return bool(self._known) or self._virtual is not None

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller presenting ``headers`` (lower-case names).

        Raises:
            AuthenticationError: keys are configured and none, or an unknown one, was sent.
            PermissionDeniedError: a virtual key whose tenant is blocked or expired.
        """
        if not self.enabled:
            return ANONYMOUS
        presented = presented_key(headers)
        if presented is None:
            raise AuthenticationError(
                "Missing API key: send `Authorization: Bearer <key>`.", code="missing_api_key"
            )
        if self._virtual is not None and presented.startswith(KEY_PREFIX):
            return await self._virtual.authenticate(presented)
        digest = _digest(presented)
        found: Principal | None = None
        for known, principal in self._known:
            if hmac.compare_digest(digest, known):
                found = principal
        if found is None:
            raise AuthenticationError("Incorrect API key provided.")
        return found


def _principal(key: str, *, admin: bool) -> Principal:
    key_id = key_id_of(key)
    return Principal(key_id=key_id, admin=admin, limit_scopes=(f"key:{key_id}",))
