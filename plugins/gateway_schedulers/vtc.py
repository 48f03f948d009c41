"""Virtual token counters: the weighted service each share key got (``fair_share``).

After Sheng et al., "Fairness in Serving Large Language Models" (OSDI 2024): a request's service
is its input tokens plus twice its output tokens, divided by its weight. The estimate is charged
when a request is admitted and corrected by the difference when it finishes, so a counter also
counts requests that never waited.

A key is **active** while it has a waiting or a running request. Two rules keep idleness from
being banked and memory bounded, and they agree with each other:

* *Lift* (applied by the scheduler, with :meth:`VirtualTokenCounters.lift`): a key that turns
  active is raised to at least the smallest counter among the other active keys (and a key
  that joins a band's backlog to the smallest counter backlogged in that band).
* *Drop*: a key that turns idle is forgotten when its counter is at or below the smallest
  active counter, or when no other key is active. Such a key would be lifted to at least the
  same value on its return, so forgetting it changes nothing. Idle keys above the smallest
  active counter are kept, and swept out once the smallest active counter passes them
  (checked when the table has doubled since the last sweep, so the sweep is amortised O(1)).

Counters of active keys sit in a heap keyed by counter, with lazy deletion: each change pushes
a fresh entry stamped with a new version, and stale entries are skipped at the top (the heap is
rebuilt when more than half of it is stale).
"""

from __future__ import annotations

import heapq
import itertools

_SWEEP_FLOOR = 64
_SLACK = 16  # stale heap entries tolerated before a rebuild, beyond one per live entry


class VirtualTokenCounters:
    """Per-share-key service counters, with the activity that the lift and drop rules need."""

    def __init__(self) -> None:
        self._value: dict[str, float] = {}
        self._version: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        self._running: dict[str, int] = {}
        self._active: list[tuple[float, int, str]] = []  # (counter, version, key)
        self._stamps = itertools.count(1)  # versions are never reused, even after a drop
        self._live = 0  # active keys
        self._sweep_at = _SWEEP_FLOOR

    def value(self, key: str) -> float:
        """``key``'s counter (0 for a key not counted)."""
        return self._value.get(key, 0.0)

    def version(self, key: str) -> int:
        """A stamp that changes whenever ``key``'s counter does (0 for a key not counted)."""
        return self._version.get(key, 0)

    def is_active(self, key: str) -> bool:
        """Whether ``key`` has a waiting or a running request."""
        return key in self._waiting or key in self._running

    def is_running(self, key: str) -> bool:
        """Whether ``key`` has an admitted request that has not finished."""
        return key in self._running

    def running(self, key: str) -> int:
        """How many admitted requests of ``key`` have not finished."""
        return self._running.get(key, 0)

    def running_counts(self) -> dict[str, int]:
        """Admitted, unfinished requests per key that has any (a live view: do not change)."""
        return self._running

    def min_active(self) -> float | None:
        """The smallest counter among active keys; None when none is active."""
        heap = self._active
        while heap:
            value, version, key = heap[0]
            if self.is_active(key) and self.version(key) == version:
                return value
            heapq.heappop(heap)
        return None

    def lift(self, key: str, floor: float) -> bool:
        """Raise ``key``'s counter to ``floor`` if it is below; whether it changed."""
        if self.value(key) >= floor:
            return False
        self._set(key, floor)
        return True

    def charge(self, key: str, amount: float) -> None:
        """Add ``amount`` (weighted service; negative to correct an estimate) to ``key``."""
        self._set(key, self.value(key) + amount)

    def waiting_added(self, key: str) -> None:
        """A request of ``key`` started waiting (lift it first if it was idle)."""
        self._count(self._waiting, key, 1)

    def waiting_removed(self, key: str) -> None:
        """A waiting request of ``key`` left the queue (popped or removed)."""
        self._count(self._waiting, key, -1)

    def running_added(self, key: str) -> None:
        """A request of ``key`` was admitted (lift it first if it was idle)."""
        self._count(self._running, key, 1)

    def running_removed(self, key: str) -> None:
        """An admitted request of ``key`` ended (a no-op when none runs)."""
        if key in self._running:
            self._count(self._running, key, -1)

    def snapshot(self) -> dict[str, float]:
        """Every kept counter (an active key's at least, 0 before its first charge)."""
        return dict(self._value)

    def _set(self, key: str, value: float) -> None:
        self._value[key] = value
        version = self._version[key] = next(self._stamps)
        if self.is_active(key):
            self._index(value, version, key)

    def _index(self, value: float, version: int, key: str) -> None:
        heapq.heappush(self._active, (value, version, key))
        if len(self._active) > 2 * self._live + _SLACK:
            self._active = [
                (self.value(k), self.version(k), k)
                for k in self._waiting.keys() | self._running.keys()
            ]
            heapq.heapify(self._active)

    def _count(self, counts: dict[str, int], key: str, step: int) -> None:
        was_active = self.is_active(key)
        left = counts.get(key, 0) + step
        if left > 0:
            counts[key] = left
        else:
            counts.pop(key, None)
        if not was_active and self.is_active(key):
            self._live += 1
            self._value.setdefault(key, 0.0)  # listed in the snapshot from now on
            self._index(self.value(key), self.version(key), key)
        elif was_active and not self.is_active(key):
            self._live -= 1
            self._idled(key)

    def _idled(self, key: str) -> None:
        floor = self.min_active()
        if floor is None or self.value(key) <= floor:
            self._drop(key)
        if len(self._value) > self._sweep_at:
            self._sweep(floor)
            self._sweep_at = max(_SWEEP_FLOOR, 2 * len(self._value))

    def _sweep(self, floor: float | None) -> None:
        for key in [k for k, v in self._value.items() if floor is None or v <= floor]:
            if not self.is_active(key):
                self._drop(key)

    def _drop(self, key: str) -> None:
        self._value.pop(key, None)
        self._version.pop(key, None)
