"""Client authentication by API key.

Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every configured
key without early exit, so response time does not reveal how much of a key matched.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from gateway.errors import AuthenticationError


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Authenticator:
    """Checks ``Authorization: Bearer <key>`` against the configured keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(k) for k in keys if k]

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (otherwise every request is allowed)."""
        return bool(self._digests)

    def check(self, authorization: str | None, api_key: str | None = None) -> None:
        """Accept the request or raise.

        Args:
            authorization: the ``Authorization`` header.
            api_key: an ``x-api-key`` header (Anthropic-style clients), used when there is no
                bearer token.

        Raises:
            AuthenticationError: no key, or a key that is not configured.
        """
        if not self._digests:
            return
        presented = None
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                presented = token.strip()
        if presented is None and api_key:
            presented = api_key.strip()
        if presented is None:
            raise AuthenticationError(
                "Missing API key: send `Authorization: Bearer <key>`.", code="missing_api_key"
            )
        digest = _digest(presented)
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            raise AuthenticationError("Incorrect API key provided.")
