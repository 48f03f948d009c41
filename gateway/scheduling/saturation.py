"""When a model group counts as saturated: the signal admission control waits on.

A group is saturated when any of these holds:

- **outage**: none of its backends is routable (``Backend.available``). Requests then wait for
  one to come back (a health probe, a breaker closing) until their deadline, and get a 503.
- **in-flight cap** (``max_in_flight``): the requests the gateway has admitted to the group
  and not yet released reach ``max_in_flight`` times its routable backends. The admission count
  is used, not ``Backend.in_flight``, because a request is admitted before the router picks its
  backend: the backends' counts lag behind the admissions. For all but urgent requests the cap
  is ``max_in_flight - headroom``: the headroom is theirs.
- **engine load** (``max_engine_waiting`` / ``max_kv_cache``): every routable backend has a
  fresh engine reading (:data:`ENGINE_READING_MAX_AGE_S`) at or past a threshold. A backend
  without a fresh reading (not scraped, scraper stalled, not a vLLM backend) counts as having
  room: without evidence the gateway does not hold requests back, so a group with no fresh
  reading at all ignores the engine signal.

Checked on every request, so it allocates nothing and reads a few attributes per backend.
"""

from __future__ import annotations

import time

from gateway.routing.backends import ModelGroup
from gateway.routing.base import EngineMetrics
from gateway.settings_scheduling import SchedulingSettings

ENGINE_READING_MAX_AGE_S = 5.0
"""An engine reading older than this (seconds) is not used: the scraper reads every 0.5 s by
default, so a reading this old means the scraper or the engine's metrics endpoint stalled."""


class Saturation:
    """Whether one model group is saturated (see the module docstring).

    Args:
        group: the live group (its backends may change at run time; they are read each time).
        settings: its ``scheduling:`` section.
        max_age_s: how old an engine reading may be and still count.
    """

    __slots__ = (
        "_group",
        "_headroom",
        "_max_age_s",
        "_max_kv_cache",
        "_max_waiting",
        "_per_backend",
    )

    def __init__(
        self,
        group: ModelGroup,
        settings: SchedulingSettings,
        max_age_s: float = ENGINE_READING_MAX_AGE_S,
    ) -> None:
        self._group = group
        self._per_backend = settings.max_in_flight
        self._headroom = settings.headroom
        self._max_waiting = settings.max_engine_waiting
        self._max_kv_cache = settings.max_kv_cache
        self._max_age_s = max_age_s

    def routable(self) -> int:
        """How many of the group's backends are routable now."""
        count = 0
        for backend in self._group.backends:
            if backend.available:
                count += 1
        return count

    def capacity(self, *, urgent: bool = True) -> int | None:
        """Requests the group may have admitted at once now, headroom included unless
        ``urgent`` is False (None: no in-flight cap)."""
        if self._per_backend is None:
            return None
        per_backend = self._per_backend if urgent else self._per_backend - self._headroom
        return per_backend * self.routable()

    @property
    def has_headroom(self) -> bool:
        """Whether some slots are held back for urgent requests."""
        return self._headroom > 0

    def saturated(self, admitted: int, *, urgent: bool = False) -> bool:
        """Whether the group is saturated with ``admitted`` requests admitted and unreleased,
        for an urgent request (the headroom is open to it) or for any other."""
        reads_engines = self._max_waiting is not None or self._max_kv_cache is not None
        now = time.monotonic() if reads_engines else 0.0
        routable = 0
        engines_full = reads_engines  # every routable backend so far is full by its engine
        for backend in self._group.backends:
            if not backend.available:
                continue
            routable += 1
            if engines_full:
                engines_full = self.engine_full(backend.engine, now)
        if routable == 0:
            return True
        per_backend = self._per_backend
        if per_backend is not None:
            if not urgent:
                per_backend -= self._headroom
            if admitted >= per_backend * routable:
                return True
        return engines_full

    def engine_full(self, engine: EngineMetrics | None, now: float) -> bool:
        """Whether a backend's engine reading is fresh and at or past a threshold (False when
        there is no reading, or it is stale)."""
        if engine is None or not engine.fresh(now, self._max_age_s):
            return False
        if self._max_waiting is not None and engine.waiting >= self._max_waiting:
            return True
        return self._max_kv_cache is not None and engine.kv_cache_usage >= self._max_kv_cache
