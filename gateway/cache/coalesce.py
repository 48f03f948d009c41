"""Request coalescing: identical cacheable requests in flight at once share one upstream call.

The first request for a key leads; requests for the same key that arrive while it runs follow:
they wait for the leader's complete answer (shielded, so one follower going away cancels nothing)
and answer from it, as a body or a replayed stream. If the leader fails, followers go upstream
themselves.
"""

from __future__ import annotations

import asyncio


class Coalescer:
    """In-flight leaders by cache key."""

    def __init__(self) -> None:
        self._leaders: dict[str, asyncio.Future[bytes | None]] = {}

    def follow(self, key: str) -> asyncio.Future[bytes | None] | None:
        """The leader's future for ``key``, or None when there is no leader (then lead)."""
        return self._leaders.get(key)

    def lead(self, key: str) -> None:
        """Become the leader for ``key``."""
        self._leaders[key] = asyncio.get_running_loop().create_future()

    def finish(self, key: str, body: bytes | None) -> None:
        """The leader's outcome: its body, or None when it failed (idempotent)."""
        future = self._leaders.pop(key, None)
        if future is not None and not future.done():
            future.set_result(body)

    def __len__(self) -> int:
        return len(self._leaders)
