"""Cache keys: a hash of the canonical request, namespaced per tenant.

The key covers the model group, the endpoint, and every field of the body that can change the
output; it leaves out ``stream``, ``stream_options``, ``user``, request ids and the cache-control
extension, so a streamed and a plain request for the same thing share an entry.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

IGNORED_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "request_id",
        "cache_control",
        "metadata",
        "store",
        "service_tier",
    }
)
_canonical = msgspec.json.Encoder(order="sorted")


def cache_key(namespace: str, group: str, endpoint: str, body: dict[str, Any]) -> str:
    """``<namespace>:<sha256 of the canonical request>``."""
    kept = {k: v for k, v in body.items() if k not in IGNORED_FIELDS and k != "model"}
    digest = hashlib.sha256(_canonical.encode({"g": group, "e": endpoint, "b": kept}))
    return f"{namespace}:{digest.hexdigest()}"


def tenant_namespace(api_key: str | None) -> str:
    """A namespace per API key (a digest, never the key itself); ``public`` without keys."""
    if not api_key:
        return "public"
    return "t" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
