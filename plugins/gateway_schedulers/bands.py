"""The non-empty priority bands of a queue, highest first.

A scheduler keeps its waiters in a mapping from band (``ticket.priority``) to that band's
queue and deletes a band's entry once it empties; this index finds the highest band left in
O(log b) without scanning the mapping on every pop. Emptied bands are dropped from the heap
lazily, when they reach its top, so each distinct band is listed at most once.
"""

from __future__ import annotations

import heapq
from collections.abc import Container


class BandOrder:
    """The bands that may hold waiters, highest first (lazy deletion)."""

    def __init__(self) -> None:
        self._heap: list[int] = []  # negated bands: heapq is a min-heap
        self._listed: set[int] = set()

    def add(self, band: int) -> None:
        """``band`` has a waiter now (a no-op when it is listed already)."""
        if band not in self._listed:
            self._listed.add(band)
            heapq.heappush(self._heap, -band)

    def highest(self, present: Container[int]) -> int | None:
        """The highest listed band that is in ``present``; None when none is.

        Bands not in ``present`` are emptied ones: they are forgotten as they are met.
        """
        while self._heap:
            band = -self._heap[0]
            if band in present:
                return band
            heapq.heappop(self._heap)
            self._listed.discard(band)
        return None
