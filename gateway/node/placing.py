"""What placement strategies share: the free memory of each GPU while demands are placed one
after another (:class:`FreeMemory`), the fit check, the reason an engine fits nowhere, and the
loop that places demands in turn (:func:`place_each`).

A strategy is then mostly an order over the GPUs that fit: ``best_fit`` sorts them tightest
first, ``least_utilized`` quietest first. Third-party strategies may reuse all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.node.base import EngineDemand, GpuSlot, PlacedEngine, Placement

Choose = Callable[[EngineDemand, "FreeMemory"], "tuple[int, ...]"]
"""``choose(demand, free) -> GPU indices``: ``demand.gpus`` distinct GPUs with its memory free
(called only when enough fit)."""


def mib(value: float) -> str:
    """``value`` MiB as an operator reads it (``40000``, ``1023.5``)."""
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


class FreeMemory:
    """The free memory of each GPU, as placements so far left it.

    Args:
        gpus: the node's GPUs (distinct indices), as the agent read them.
    """

    def __init__(self, gpus: Sequence[GpuSlot]) -> None:
        self.gpus = {gpu.index: gpu for gpu in sorted(gpus, key=lambda g: g.index)}
        self.free = {gpu.index: gpu.memory_free_mib for gpu in self.gpus.values()}

    def copy(self) -> FreeMemory:
        """An independent copy (to try a change without making it)."""
        other = FreeMemory(())
        other.gpus = self.gpus
        other.free = dict(self.free)
        return other

    def fitting(self, demand: EngineDemand) -> list[int]:
        """The GPUs with at least ``demand.memory_mib`` free, by index."""
        return [index for index, free in self.free.items() if free >= demand.memory_mib]

    def fits(self, demand: EngineDemand) -> bool:
        """Whether ``demand.gpus`` distinct GPUs have its memory free."""
        return len(self.fitting(demand)) >= demand.gpus

    def take(self, demand: EngineDemand, indices: Sequence[int]) -> None:
        """Give ``demand`` its memory on ``indices``."""
        for index in indices:
            self.free[index] -= demand.memory_mib

    def release(self, engine: PlacedEngine) -> None:
        """Count a running engine's memory as free again (it is to be displaced), never beyond a
        GPU's total; GPUs not on this node are ignored."""
        for index in engine.gpus:
            if index in self.free:
                total = self.gpus[index].memory_total_mib
                self.free[index] = min(self.free[index] + engine.memory_mib, total)

    def reason(self, demand: EngineDemand) -> str:
        """Why ``demand`` fits nowhere, naming what it needs and the most free memory seen
        (``needs 2 GPUs with 40000 MiB free; the most free is 30000 MiB on GPU 1``). Only for
        a demand that does not fit (:meth:`fits` is False)."""
        count = f"{demand.gpus} GPU{'s' if demand.gpus != 1 else ''}"
        needs = f"needs {count} with {mib(demand.memory_mib)} MiB free"
        if len(self.free) < demand.gpus:
            return f"{needs}; the node has {len(self.free)}"
        fitting = self.fitting(demand)
        rest = sorted((i for i in self.free if i not in fitting), key=lambda i: (-self.free[i], i))
        most = rest[0]
        seen = f"{mib(self.free[most])} MiB on GPU {most}"
        if not fitting:
            return f"{needs}; the most free is {seen}"
        listed = ", ".join(str(i) for i in fitting)
        return f"{needs}; only GPU {listed} fits, the next most free is {seen}"


def place_each(demands: Sequence[EngineDemand], free: FreeMemory, choose: Choose) -> Placement:
    """Place ``demands`` in their order, each on the GPUs ``choose`` picks, each placement
    reducing the free memory the next one sees; a demand that fits nowhere is unplaced with
    :meth:`FreeMemory.reason`. Assigned indices are ascending."""
    placement = Placement()
    for demand in demands:
        if free.fits(demand):
            indices = choose(demand, free)
            free.take(demand, indices)
            placement.assigned[demand.name] = tuple(sorted(indices))
        else:
            placement.unplaced[demand.name] = free.reason(demand)
    return placement


def first_fitting(
    demand: EngineDemand, free: FreeMemory, key: Callable[[int], tuple[float, ...]]
) -> tuple[int, ...]:
    """The first ``demand.gpus`` GPUs that fit ``demand`` in the order of ``key(index)`` (ties
    broken by index). The caller checked that enough fit."""
    ordered = sorted(free.fitting(demand), key=lambda index: (key(index), index))
    return tuple(ordered[: demand.gpus])
