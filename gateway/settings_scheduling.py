"""A model group's ``scheduling:`` section: when it counts as saturated, how long requests may
wait while it is, and who goes next (``docs/scheduling.md``). Unknown keys are rejected."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.settings_base import PluginChoice, PositiveFloat, _Config


def _fifo() -> PluginChoice:
    return PluginChoice(backend="fifo")


class SchedulingSettings(_Config):
    """Admission control for one model group (none when the section is absent: requests go
    straight to routing, as without a scheduler).

    Attributes:
        scheduler: who goes next (``fifo``; ``priority``: strict bands; ``fair_share``: bands,
            then the tenant with the least weighted service, in tokens).
        max_in_flight: requests one backend may have at once; the group is saturated when
            every routable backend has this many (None: no cap from the gateway's count).
        headroom: of each backend's ``max_in_flight``, the slots held back for urgent
            requests: others are admitted only up to ``max_in_flight - headroom``, and the
            scheduler says which waiters are urgent (``priority``: a band at or above its
            ``urgent_priority``; ``fair_share``: also a tenant running fewer requests than the
            busiest one; ``fifo``: none). It buys the urgent ones a slot at once instead of
            the wait for a running request to end (0: none; needs ``max_in_flight``).
        max_engine_waiting: a vLLM backend whose ``num_requests_waiting`` reaches this counts
            as saturated (from the engine-metric scraper; None: not used).
        max_kv_cache: likewise for ``kv_cache_usage_perc`` (0 to 1; None: not used).
        queue_timeout_s: how long a request may wait (a key's or tenant's own wins); then 429
            ``queue_timeout`` (503 when no backend is routable at all) with ``Retry-After``.
        max_queue: requests that may wait at once; beyond it, 429 ``queue_full`` at once.
        forward_priority: send each request's priority to vLLM backends as its ``priority``
            field (vLLM's priority scheduling: lower values first, so it is negated).
    """

    scheduler: PluginChoice = msgspec.field(default_factory=_fifo)
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] | None = None
    headroom: Annotated[int, msgspec.Meta(ge=0)] = 0
    max_engine_waiting: Annotated[float, msgspec.Meta(ge=0)] | None = None
    max_kv_cache: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    queue_timeout_s: PositiveFloat = 5.0
    max_queue: Annotated[int, msgspec.Meta(ge=0)] = 1000
    forward_priority: bool = False

    @property
    def reads_engines(self) -> bool:
        """Whether saturation reads the engines' metrics (the scraper must run)."""
        return self.max_engine_waiting is not None or self.max_kv_cache is not None
