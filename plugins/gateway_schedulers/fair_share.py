"""The ``fair_share`` scheduler: strict priority bands, then the least-served tenant.

Within the highest band that has waiters, the next request is the oldest one of the share key
(``ticket.share_key``: the tenant, else the key) with the smallest virtual token counter
(:mod:`gateway_schedulers.vtc`), so a tenant sending ten times more requests gets no more
service than a light one while both wait; ties go to the key whose oldest request came first.
Counters count every admitted request (``started``), not only those that waited, and are
corrected with the tokens actually used (``finished``).

*Counter lift.* A key that joins a band's backlog (it had nothing waiting in that band) is
raised to at least the smallest counter among the keys backlogged there; in an empty band, a
key that was idle altogether (nothing waiting or running) is raised to the smallest counter of
the active keys, and so is an idle key admitted at once. Either way a tenant that stayed away
does not return with a banked credit and hold the group until the others catch up. The lift is
per band because a key's backlog in a lower band, held back by a higher one, accrues no service
either. Idle keys' counters are dropped as :mod:`gateway_schedulers.vtc` describes.

Each band keeps one queue per backlogged key and a heap of ``(counter, arrival of its oldest
waiter, counter version, key)`` with lazy deletion: a change to a key's counter or oldest waiter
pushes a fresh entry, stale ones are skipped at the top, and the heap is rebuilt when more than
half of it is stale. ``push``, ``pop`` and ``remove`` are thus O(log n) amortised.

A popped ticket counts as running from ``pop`` on, so the key does not look idle between ``pop``
and ``started`` (which would lift it and cost it its place).

*Urgency* (who may take the group's ``headroom``): a request of a band at or above
``urgent_priority`` (option, 1 by default), or of a key that runs fewer requests per unit of
weight than the busiest running key. The second rule is what keeps a light tenant's latency
near its unloaded figure under overload: the heavy tenant is held to the slots outside the
headroom, and the light one takes a held-back slot at once instead of waiting for a running
request to end. Finding the urgent key scans the band's backlogged keys: O(keys) per urgent
``pop``, which only happens while the group is full but for its headroom. With the option
``under_share_first``, every pop prefers such a key, so a burst that outgrows the headroom still
takes each slot that frees (and every pop of a contended group costs O(keys)).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.scheduling.base import AdmissionTicket
from gateway_schedulers.bands import BandOrder
from gateway_schedulers.vtc import VirtualTokenCounters

_SLACK = 16  # stale heap entries tolerated before a rebuild, beyond one per live entry

_Entry = tuple[float, int, int, str]  # (counter, arrival of the oldest waiter, version, key)


@dataclass(slots=True)
class _Band:
    """One priority band: a FIFO queue per backlogged key (ticket -> arrival number)."""

    queues: dict[str, OrderedDict[AdmissionTicket, int]] = field(default_factory=dict)
    heap: list[_Entry] = field(default_factory=list)
    size: int = 0


class FairShareScheduler:
    """A :class:`gateway.scheduling.base.Scheduler`: priority bands, then Virtual Token Counter
    fairness between share keys, then arrival (``fair_share``).

    Args:
        urgent_priority: the lowest band whose requests may take the group's headroom (below
            it, only keys under their share may).
        under_share_first: in every pop, not only the headroom's, a key under its share of
            the running requests goes before the counters' order (O(keys) per pop).
    """

    def __init__(self, urgent_priority: int = 1, under_share_first: bool = False) -> None:
        if isinstance(urgent_priority, bool) or not isinstance(urgent_priority, int):
            raise TypeError("urgent_priority must be an integer")
        if not isinstance(under_share_first, bool):
            raise TypeError("under_share_first must be true or false")
        self.urgent_priority = urgent_priority
        self.under_share_first = under_share_first
        self._weights: dict[str, float] = {}  # share key -> weight, while it runs
        self._bands: dict[int, _Band] = {}
        self._order = BandOrder()
        self._counters = VirtualTokenCounters()
        self._bands_of: dict[str, set[int]] = {}  # share key -> bands where it waits
        self._popped: set[AdmissionTicket] = set()  # popped, not yet started
        self._arrivals = itertools.count()
        self._size = 0

    def push(self, ticket: AdmissionTicket) -> None:
        """``ticket`` starts waiting (lifting its key's counter if it joins a backlog).

        Raises:
            ValueError: it is waiting already.
        """
        key = ticket.share_key
        band = self._bands.get(ticket.priority)
        if band is None:
            band = self._bands[ticket.priority] = _Band()
            self._order.add(ticket.priority)
        queue = band.queues.get(key)
        if queue is None:
            self._lift(key, self._band_min(band))
            queue = band.queues[key] = OrderedDict()
            self._bands_of.setdefault(key, set()).add(ticket.priority)
        elif ticket in queue:
            raise ValueError(f"request {ticket.request_id} is waiting already")
        queue[ticket] = next(self._arrivals)
        band.size += 1
        self._size += 1
        self._counters.waiting_added(key)
        if len(queue) == 1:
            self._index(band, key, queue)

    def pop(self, *, urgent: bool = False) -> AdmissionTicket | None:
        """The oldest ticket of the least-served key in the highest band, removed; None when
        none waits. With ``urgent``, of the least-served urgent key (see the module
        docstring), None when none is. The ticket counts as running until :meth:`started`."""
        priority = self._order.highest(self._bands)
        if priority is None:
            return None
        band = self._bands[priority]
        if urgent and priority < self.urgent_priority:
            found = self._least_served_under_share(band)
            if found is None:
                return None
            key = found
        elif self.under_share_first:
            key = self._least_served_under_share(band) or self._least_served(band)
        else:
            key = self._least_served(band)
        queue = band.queues[key]
        ticket, _ = queue.popitem(last=False)
        self._popped.add(ticket)
        self._counters.running_added(key)
        self._taken(ticket, band, queue, head=True)
        return ticket

    def remove(self, ticket: AdmissionTicket) -> bool:
        """Take ``ticket`` out of the queue; False if it was not waiting."""
        band = self._bands.get(ticket.priority)
        queue = None if band is None else band.queues.get(ticket.share_key)
        if band is None or queue is None or ticket not in queue:
            return False
        head = next(iter(queue)) is ticket
        del queue[ticket]
        self._taken(ticket, band, queue, head=head)
        return True

    def __len__(self) -> int:
        return self._size

    def started(self, ticket: AdmissionTicket) -> None:
        """Charge ``ticket``'s estimated service to its key (lifting an idle key first)."""
        key = ticket.share_key
        if ticket in self._popped:
            self._popped.discard(ticket)
        else:
            if not self._counters.is_active(key):
                self._lift(key, None)
            self._counters.running_added(key)
        self._weights[key] = ticket.weight
        self._counters.charge(key, ticket.estimated_service / ticket.weight)
        self._reindex(key)

    def finished(self, ticket: AdmissionTicket, input_tokens: int, output_tokens: int) -> None:
        """Correct the key's counter by the actual service minus the estimate charged.

        A popped ticket that never started is only uncounted; a ticket whose key has nothing
        running is ignored (it was never started).
        """
        key = ticket.share_key
        if ticket in self._popped:
            self._popped.discard(ticket)
        elif self._counters.is_running(key):
            actual = input_tokens + 2 * output_tokens
            self._counters.charge(key, (actual - ticket.estimated_service) / ticket.weight)
        else:
            return
        self._counters.running_removed(key)
        if not self._counters.is_running(key):
            self._weights.pop(key, None)
        self._reindex(key)

    def depths(self) -> Mapping[int, int]:
        """Tickets waiting per priority band (bands with none are left out)."""
        return {priority: band.size for priority, band in self._bands.items()}

    def service(self) -> Mapping[str, float]:
        """The virtual token counter of each share key kept (idle keys may be dropped)."""
        return self._counters.snapshot()

    def _lift(self, key: str, band_floor: float | None) -> None:
        # The band's smallest counter if the band has a backlog; else, for a key that was
        # idle altogether, the smallest active counter; else nothing competes: no lift.
        floor = band_floor
        if floor is None and not self._counters.is_active(key):
            floor = self._counters.min_active()
        if floor is not None and self._counters.lift(key, floor):
            self._reindex(key)

    def _valid(self, band: _Band, entry: _Entry) -> bool:
        _, arrival, version, key = entry
        queue = band.queues.get(key)
        return (
            queue is not None
            and next(iter(queue.values())) == arrival
            and self._counters.version(key) == version
        )

    def _band_min(self, band: _Band) -> float | None:
        while band.heap:
            if self._valid(band, band.heap[0]):
                return band.heap[0][0]
            heapq.heappop(band.heap)
        return None

    def _least_served(self, band: _Band) -> str:
        # Every backlogged key has a valid entry, so a non-empty band's heap ends on one.
        while not self._valid(band, band.heap[0]):
            heapq.heappop(band.heap)
        return band.heap[0][3]

    def _least_served_under_share(self, band: _Band) -> str | None:
        # The busiest key by running requests per unit of weight sets the bar; a key below it
        # is under its share of the slots. Nobody running: nobody is under a share.
        counters = self._counters
        weights = self._weights
        busiest = 0.0
        for key, running in counters.running_counts().items():
            busiest = max(busiest, running / weights.get(key, 1.0))
        best: tuple[float, int, str] | None = None
        for key, queue in band.queues.items():
            head, arrival = next(iter(queue.items()))
            if counters.running(key) / head.weight >= busiest:
                continue
            entry = (counters.value(key), arrival, key)
            if best is None or entry < best:
                best = entry
        return None if best is None else best[2]

    def _index(self, band: _Band, key: str, queue: OrderedDict[AdmissionTicket, int]) -> None:
        counters = self._counters
        entry = (counters.value(key), next(iter(queue.values())), counters.version(key), key)
        heapq.heappush(band.heap, entry)
        if len(band.heap) > 2 * len(band.queues) + _SLACK:
            band.heap = [
                (counters.value(k), next(iter(q.values())), counters.version(k), k)
                for k, q in band.queues.items()
            ]
            heapq.heapify(band.heap)

    def _reindex(self, key: str) -> None:
        for priority in self._bands_of.get(key, ()):
            band = self._bands[priority]
            self._index(band, key, band.queues[key])

    def _taken(
        self,
        ticket: AdmissionTicket,
        band: _Band,
        queue: OrderedDict[AdmissionTicket, int],
        *,
        head: bool,
    ) -> None:
        key = ticket.share_key
        band.size -= 1
        self._size -= 1
        if not queue:
            del band.queues[key]
            bands = self._bands_of[key]
            bands.discard(ticket.priority)
            if not bands:
                del self._bands_of[key]
        elif head:
            self._index(band, key, queue)
        if not band.size:
            # BandOrder forgets the band lazily, once it sees it missing here.
            del self._bands[ticket.priority]
        self._counters.waiting_removed(key)
