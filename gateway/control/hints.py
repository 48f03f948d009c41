"""Replicas' side of the health sweep: take the shared store's health hints into routing.

The control plane's health sweep (:mod:`gateway.control.health`) probes every backend from
outside the data plane and writes what it saw to the shared store. A replica with
``control.use_health_hints`` on reads those hints every few seconds and sets each backend's
``health.hinted_down``: routing then tries a hinted-down backend last, and never excludes it
(:meth:`gateway.routing.backends.ModelGroup.candidates`). A hint, never the only truth: the
replica's own breaker and active probes decide whether a backend is available at all, and a
backend the sweep saw down that answers real traffic keeps serving.

A hint older than ``max_age_s`` is ignored (a sweep that stopped running must not keep a
backend at the back of the queue forever), as is a hint for a backend the replica does not
have. When the store cannot be read, the hints last read are kept until they age out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.control.base import ControlStore, HealthHint
from gateway.routing.backends import ModelCatalog

log = logging.getLogger("gateway.control.hints")

DEFAULT_INTERVAL_S = 5.0
DEFAULT_MAX_AGE_S = 180.0  # three missed sweeps of the scheduled one-minute job


def apply_health_hints(
    catalog: ModelCatalog, hints: Sequence[HealthHint], now: float, max_age_s: float
) -> list[str]:
    """Set ``hinted_down`` on every backend of ``catalog`` from ``hints``.

    Args:
        now: Unix time, against which each hint's ``checked_at`` is aged.
        max_age_s: hints older than this are ignored.

    Returns:
        The names of the backends now hinted down.
    """
    down = {
        (h.group, h.backend) for h in hints if not h.healthy and now - h.checked_at <= max_age_s
    }
    hinted: list[str] = []
    for group in catalog.groups:
        for backend in group.backends:
            backend.health.hinted_down = (group.name, backend.name) in down
            if backend.health.hinted_down:
                hinted.append(backend.name)
    return hinted


async def follow_health_hints(
    store: ControlStore,
    catalog: ModelCatalog,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    """Read ``store``'s hints every ``interval_s`` and apply them to the live ``catalog``, until
    cancelled (a background task of the app's lifespan). Never raises for an unreachable
    store: the hints last read stay, and age out."""
    hints: list[HealthHint] = []
    hinted: list[str] = []
    while True:
        try:
            hints = await store.health()
        except Exception as exc:  # noqa: BLE001 - a store plugin's failure must not stop the loop
            log.warning("health hints not read: %s: %s", type(exc).__name__, exc)
        now_hinted = apply_health_hints(catalog, hints, clock.time(), max_age_s)
        if now_hinted != hinted:
            log.info("backends hinted down by the health sweep: %s", now_hinted or "none")
            hinted = now_hinted
        await asyncio.sleep(interval_s)
