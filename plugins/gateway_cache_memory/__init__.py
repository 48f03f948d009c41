"""Built-in plugin: the ``memory`` cache backend (per process, LRU bounded by bytes, TTL).

Options: ``max_bytes``. The gateway also passes its ``clock`` (:class:`gateway.clock.Clock`),
which the TTLs read, so tests expire entries by moving a manual clock.
"""

from __future__ import annotations

from collections import OrderedDict

from gateway import hookimpl
from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.hookspecs import RegisterCacheBackend


class MemoryCacheBackend:
    """An LRU map bounded by ``max_bytes`` of values; entries expire after their TTL."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if max_bytes <= 0:
            raise ValueError("`max_bytes` must be positive")
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if self.clock.monotonic() >= expires:
            await self.delete(key)
            return None
        self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.delete(key)
        if len(value) > self.max_bytes:
            return
        self._items[key] = (self.clock.monotonic() + ttl_s, value)
        self.bytes += len(value)
        while self.bytes > self.max_bytes:
            _, (_, evicted) = self._items.popitem(last=False)
            self.bytes -= len(evicted)

    async def delete(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= len(item[1])

    async def aclose(self) -> None:
        self._items.clear()
        self.bytes = 0


@hookimpl
def register_cache_backends(register: RegisterCacheBackend) -> None:
    """Register ``memory``."""
    register("memory", MemoryCacheBackend)
