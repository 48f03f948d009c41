"""The built-in ``memory`` cache backend: TTLs on the injected clock, LRU bounded by bytes."""

from __future__ import annotations

import pytest
from gateway_cache_memory import MemoryCacheBackend

from gateway.clock import ManualClock

pytestmark = pytest.mark.anyio


async def test_entries_expire_after_their_ttl_on_the_clock() -> None:
    clock = ManualClock()
    backend = MemoryCacheBackend(clock=clock)
    await backend.set("k", b"value", 5)
    clock.advance(4.9)
    assert await backend.get("k") == b"value"
    clock.advance(0.1)
    assert await backend.get("k") is None
    assert backend.bytes == 0


async def test_least_recently_used_entries_go_first() -> None:
    backend = MemoryCacheBackend(max_bytes=10, clock=ManualClock())
    await backend.set("a", b"12345", 60)
    await backend.set("b", b"12345", 60)
    assert await backend.get("a") == b"12345"  # a is now the most recent
    await backend.set("c", b"12345", 60)
    assert await backend.get("b") is None
    assert await backend.get("a") == await backend.get("c") == b"12345"
    await backend.set("huge", b"x" * 11, 60)  # larger than the whole cache: not stored
    assert await backend.get("huge") is None
    assert backend.bytes == 10
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryCacheBackend(max_bytes=0)
