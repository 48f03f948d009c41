"""The ``priority`` scheduler: strict priority bands, first come first served within a band.

The highest band with a waiter always goes first, so a steady stream of high-priority requests
can hold lower bands back until their deadlines pass; that is the point of strict bands (use
``fair_share`` to share a band between tenants). Requests of a band at or above
``urgent_priority`` (option; 1 by default, one above the default priority 0) are urgent: they
may take the group's ``headroom``. Each band is an
:class:`~collections.OrderedDict`, so ``push``, ``pop`` and ``remove`` are O(1) plus
O(log bands) to find the highest band.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from gateway.scheduling.base import AdmissionTicket
from gateway_schedulers.bands import BandOrder


class PriorityScheduler:
    """A :class:`gateway.scheduling.base.Scheduler` by ``ticket.priority`` (higher first),
    then arrival (``priority``).

    Args:
        urgent_priority: the lowest band whose requests may take the group's headroom.
    """

    def __init__(self, urgent_priority: int = 1) -> None:
        if isinstance(urgent_priority, bool) or not isinstance(urgent_priority, int):
            raise TypeError("urgent_priority must be an integer")
        self.urgent_priority = urgent_priority
        self._bands: dict[int, OrderedDict[AdmissionTicket, None]] = {}
        self._order = BandOrder()
        self._size = 0

    def push(self, ticket: AdmissionTicket) -> None:
        """``ticket`` starts waiting, behind its band's earlier waiters.

        Raises:
            ValueError: it is waiting already.
        """
        band = self._bands.get(ticket.priority)
        if band is None:
            band = self._bands[ticket.priority] = OrderedDict()
            self._order.add(ticket.priority)
        elif ticket in band:
            raise ValueError(f"request {ticket.request_id} is waiting already")
        band[ticket] = None
        self._size += 1

    def pop(self, *, urgent: bool = False) -> AdmissionTicket | None:
        """The longest-waiting ticket of the highest band, removed; None when none waits (or,
        with ``urgent``, when the highest band is below ``urgent_priority``)."""
        priority = self._order.highest(self._bands)
        if priority is None or (urgent and priority < self.urgent_priority):
            return None
        band = self._bands[priority]
        ticket, _ = band.popitem(last=False)
        self._taken(priority, band)
        return ticket

    def remove(self, ticket: AdmissionTicket) -> bool:
        """Take ``ticket`` out of its band; False if it was not waiting."""
        band = self._bands.get(ticket.priority)
        if band is None or ticket not in band:
            return False
        del band[ticket]
        self._taken(ticket.priority, band)
        return True

    def __len__(self) -> int:
        return self._size

    def started(self, ticket: AdmissionTicket) -> None:
        """Nothing to count: the order does not depend on service."""

    def finished(self, ticket: AdmissionTicket, input_tokens: int, output_tokens: int) -> None:
        """Nothing to count: the order does not depend on service."""

    def depths(self) -> Mapping[int, int]:
        """Tickets waiting per priority band (bands with none are left out)."""
        return {priority: len(band) for priority, band in self._bands.items()}

    def service(self) -> Mapping[str, float]:
        """Always empty: ``priority`` keeps no service counts."""
        return {}

    def _taken(self, priority: int, band: OrderedDict[AdmissionTicket, None]) -> None:
        self._size -= 1
        if not band:
            # BandOrder forgets the band lazily, once it sees it missing here.
            del self._bands[priority]
