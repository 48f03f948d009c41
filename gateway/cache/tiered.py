"""Cache tiers in front of each other (memory before Redis), failing open.

A lookup tries each tier in order; a hit in a lower tier is promoted to the tiers above it for the
entry's remaining time to live. A tier that fails (Redis down or slower than its timeout) is
skipped, logged and counted, and retried after ``retry_after_s``: the gateway serves without it
and recovers on its own.

Entries carry their creation time, so their age and remaining time to live are known in every
tier. Time comes from the injected :class:`~gateway.clock.Clock`: wall time (``clock.time()``)
for entries, which tiers shared between gateways compare, and monotonic time for a failed tier's
``retry_after_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from gateway.cache.base import CacheBackend
from gateway.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("gateway.cache")


class CacheEntry(msgspec.Struct, array_like=True):
    """A cached response: when it was stored, its time to live and the full JSON body."""

    created: float
    ttl_s: float
    body: bytes


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(CacheEntry).decode


@dataclass
class Tier:
    """One backend of the stack and its failure state."""

    name: str
    backend: CacheBackend
    down_until: float = 0.0


class TieredCache:
    """Get and set through every tier; never raises for a tier's failure."""

    def __init__(
        self,
        tiers: Sequence[tuple[str, CacheBackend]],
        retry_after_s: float = 1.0,
        on_error: Callable[[str], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.tiers = [Tier(name, backend) for name, backend in tiers]
        self.clock = clock
        self.retry_after_s = retry_after_s
        self._on_error = on_error

    def age_of(self, entry: CacheEntry) -> int:
        """Whole seconds since ``entry`` was stored (for the ``Age`` header)."""
        return max(int(self.clock.time() - entry.created), 0)

    def _failed(self, tier: Tier, exc: BaseException) -> None:
        now = self.clock.monotonic()
        if now >= tier.down_until:
            log.warning(
                "cache tier %s failed (%s: %s); serving without it for %.1fs",
                tier.name,
                type(exc).__name__,
                exc,
                self.retry_after_s,
            )
        tier.down_until = now + self.retry_after_s
        if self._on_error:
            self._on_error(tier.name)

    def _up(self) -> list[Tier]:
        now = self.clock.monotonic()
        return [t for t in self.tiers if now >= t.down_until]

    async def get(self, key: str) -> tuple[CacheEntry, str] | None:
        """The entry and the tier it came from, or None."""
        missed: list[Tier] = []
        for tier in self._up():
            try:
                raw = await tier.backend.get(key)
            except Exception as exc:  # noqa: BLE001 - a tier's failure must not fail the request
                self._failed(tier, exc)
                continue
            if raw is None:
                missed.append(tier)
                continue
            entry = _decode(raw)
            remaining = entry.created + entry.ttl_s - self.clock.time()
            if remaining <= 0:
                missed.append(tier)
                continue
            for upper in missed:
                await self._set_one(upper, key, raw, remaining)
            return entry, tier.name
        return None

    async def _set_one(self, tier: Tier, key: str, raw: bytes, ttl_s: float) -> None:
        try:
            await tier.backend.set(key, raw, ttl_s)
        except Exception as exc:  # noqa: BLE001 - see get
            self._failed(tier, exc)

    async def set(self, key: str, body: bytes, ttl_s: float, created: float | None = None) -> None:
        """Store ``body`` in every tier that is up, to expire ``ttl_s`` after ``created`` (the
        clock's wall time when the answer arrived; now by default), however late the write
        itself runs."""
        created = self.clock.time() if created is None else created
        remaining = created + ttl_s - self.clock.time()
        if remaining <= 0:
            return
        raw = _encode(CacheEntry(created, ttl_s, body))
        for tier in self._up():
            await self._set_one(tier, key, raw, remaining)

    async def aclose(self) -> None:
        for tier in self.tiers:
            try:
                await tier.backend.aclose()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.warning("closing cache tier %s: %s", tier.name, exc)
