"""Built-in plugin: the ``redis`` cache backend (shared across processes and machines).

Values are zlib-compressed; every call has a tight timeout (``timeout_ms``, 20 by default) so a
slow or dead Redis costs a request at most that, and the tiered cache then skips it for a while.

Also the ``redis`` response store (``response_store.py``), here because it needs the same client
library and new entry points cannot be added in this session (the installed metadata would not
follow); a later change can give it its own distribution without touching the store itself.
"""

from __future__ import annotations

import asyncio
import zlib

import redis.asyncio as aioredis

from gateway import hookimpl
from gateway.hookspecs import RegisterCacheBackend, RegisterResponseStore
from gateway_cache_redis.response_store import RedisResponseStore


class RedisCacheBackend:
    """Entries under ``prefix`` in one Redis database, with Redis's own expiry."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        timeout_ms: float = 20.0,
        prefix: str = "gateway:cache:",
        compress_level: int = 1,
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"`url` must be a redis:// URL, got `{url}`")
        self.prefix = prefix
        self.timeout_s = timeout_ms / 1000
        self.level = compress_level
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            retry_on_timeout=False,
        )

    async def get(self, key: str) -> bytes | None:
        async with asyncio.timeout(self.timeout_s):
            raw = await self._client.get(self.prefix + key)
        if raw is None:
            return None
        return zlib.decompress(raw if isinstance(raw, bytes) else raw.encode())

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        data = zlib.compress(value, self.level)
        async with asyncio.timeout(self.timeout_s):
            await self._client.set(self.prefix + key, data, px=max(int(ttl_s * 1000), 1))

    async def delete(self, key: str) -> None:
        async with asyncio.timeout(self.timeout_s):
            await self._client.delete(self.prefix + key)

    async def aclose(self) -> None:
        await self._client.aclose()


@hookimpl
def register_cache_backends(register: RegisterCacheBackend) -> None:
    """Register ``redis``."""
    register("redis", RedisCacheBackend)


@hookimpl
def register_response_stores(register: RegisterResponseStore) -> None:
    """Register ``redis``."""
    register("redis", RedisResponseStore)
