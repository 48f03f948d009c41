"""The cache-backend contract, registered through ``register_cache_backends``.

A factory is called with the backend's config options as keyword arguments and returns a
:class:`CacheBackend`. Keys are opaque strings built by the gateway (already namespaced per tenant);
values are opaque bytes.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class CacheBackend(Protocol):
    """A byte store with per-entry time to live."""

    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds."""
        ...

    async def delete(self, key: str) -> None:
        """Forget ``key`` (no error when absent)."""
        ...

    async def aclose(self) -> None:
        """Release connections and memory."""
        ...


class CacheBackendFactory(Protocol):
    """What ``register_cache_backends`` registers."""

    def __call__(self, **options: Any) -> CacheBackend: ...
