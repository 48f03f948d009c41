"""The built-in placement strategies: ``best_fit``, ``least_utilized``, ``priority`` and
``round_robin`` (``node.placement.backend``); none takes options.

Each places the demands one after another (``priority``: highest priority first), each
placement reducing the free memory the next one sees; an engine with ``gpus=k`` gets ``k``
distinct GPUs, each with its ``memory_mib`` free; one that fits nowhere is reported in
``Placement.unplaced`` with what it needs and the most free memory seen, never forced.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.node.base import EngineDemand, GpuSlot, PlacedEngine, Placement
from gateway.node.placing import FreeMemory, first_fitting, place_each


def _tightest(demand: EngineDemand, free: FreeMemory) -> tuple[int, ...]:
    return first_fitting(demand, free, lambda index: (free.free[index],))


class BestFitStrategy:
    """``best_fit``: the GPUs with the least free memory that still fit (tightest first, ties
    by index), which keeps the roomiest GPUs whole for large engines."""

    def place(
        self,
        demands: Sequence[EngineDemand],
        gpus: Sequence[GpuSlot],
        running: Sequence[PlacedEngine],
    ) -> Placement:
        return place_each(demands, FreeMemory(gpus), _tightest)


class LeastUtilizedStrategy:
    """``least_utilized``: the GPUs with the lowest utilization, then the most free memory,
    then the lowest index.

    A GPU whose utilization is unknown (None) comes after every GPU whose utilization is
    known: not being able to read it is no evidence that it is idle. Utilization is the
    reading's, so engines placed in the same call do not raise it; the free memory they take
    does spread the next ones (equal utilization: most free first).
    """

    def place(
        self,
        demands: Sequence[EngineDemand],
        gpus: Sequence[GpuSlot],
        running: Sequence[PlacedEngine],
    ) -> Placement:
        free = FreeMemory(gpus)

        def quietest(demand: EngineDemand, free: FreeMemory) -> tuple[int, ...]:
            def key(index: int) -> tuple[float, ...]:
                utilization = free.gpus[index].utilization_pct
                unknown = utilization is None
                return (float(unknown), utilization or 0.0, -free.free[index])

            return first_fitting(demand, free, key)

        return place_each(demands, free, quietest)


class RoundRobinStrategy:
    """``round_robin``: each engine gets the GPUs that fit next in index order, starting after
    the last GPU given out, wrapping around.

    The strategy object keeps that cursor (the index of the last GPU given) across calls: the
    node agent holds one strategy for its life and asks it only for new engines, so successive
    engines go round the GPUs. Its answers are therefore deterministic for the same sequence
    of calls, not for one call alone. A fresh strategy starts at the lowest index.
    """

    def __init__(self) -> None:
        self.last: int | None = None

    def place(
        self,
        demands: Sequence[EngineDemand],
        gpus: Sequence[GpuSlot],
        running: Sequence[PlacedEngine],
    ) -> Placement:
        return place_each(demands, FreeMemory(gpus), self._next)

    def _next(self, demand: EngineDemand, free: FreeMemory) -> tuple[int, ...]:
        last = self.last

        def turn(index: int) -> tuple[float, ...]:
            # Those after the cursor come first, then the wrap-around from the lowest index.
            return (float(last is not None and index <= last),)

        chosen = first_fitting(demand, free, turn)
        self.last = max(chosen, key=lambda index: (*turn(index), index))
        return chosen


class PriorityStrategy:
    """``priority``: demands by priority, highest first (equal ones in the order given), each
    placed best-fit; a demand that fits nowhere may displace running engines of strictly lower
    priority.

    Displacement takes the lowest-priority engines first (larger first among equals, then by
    name) until the demand fits, then keeps any of them it turns out not to need (the
    higher-priority ones first); so it stops as few as that greedy pass finds, and only on the
    GPUs where that frees enough. Displaced engines are listed in ``Placement.displaced`` and
    their memory counts as free from then on. An engine of equal or higher priority is never
    displaced; a demand that displacing every lower one would not fit is unplaced and
    displaces nothing.
    """

    def place(
        self,
        demands: Sequence[EngineDemand],
        gpus: Sequence[GpuSlot],
        running: Sequence[PlacedEngine],
    ) -> Placement:
        free = FreeMemory(gpus)
        placement = Placement()
        for demand in sorted(demands, key=lambda d: -d.priority):
            if not free.fits(demand):
                left = [e for e in running if e.name not in placement.displaced]
                victims = _victims(demand, free, left)
                if victims is None:
                    placement.unplaced[demand.name] = free.reason(demand)
                    continue
                for engine in victims:
                    free.release(engine)
                    placement.displaced.append(engine.name)
            indices = _tightest(demand, free)
            free.take(demand, indices)
            placement.assigned[demand.name] = tuple(sorted(indices))
        return placement


def _fits_without(demand: EngineDemand, free: FreeMemory, engines: list[PlacedEngine]) -> bool:
    trial = free.copy()
    for engine in engines:
        trial.release(engine)
    return trial.fits(demand)


def _victims(
    demand: EngineDemand, free: FreeMemory, running: Sequence[PlacedEngine]
) -> list[PlacedEngine] | None:
    """The running engines to displace so that ``demand`` fits, lowest priority first; None
    when displacing every lower-priority one would not be enough."""
    lower = sorted(
        (e for e in running if e.priority < demand.priority),
        key=lambda e: (e.priority, -e.memory_mib, e.name),
    )
    chosen: list[PlacedEngine] = []
    for engine in lower:
        chosen.append(engine)
        if _fits_without(demand, free, chosen):
            break
    else:
        return None
    for engine in reversed(chosen[:-1]):
        fewer = [e for e in chosen if e is not engine]
        if _fits_without(demand, free, fewer):
            chosen = fewer
    return chosen
