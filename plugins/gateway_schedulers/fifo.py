"""The ``fifo`` scheduler: first come, first served, whatever the priority.

Nobody is urgent to ``fifo``: a group's ``headroom`` stays unused with it.

The waiters live in an :class:`~collections.OrderedDict` (a hash map threaded on a linked list),
so ``push``, ``pop`` and ``remove`` of any waiter (a deadline passed, a client left) are all
O(1), and ``len`` is exact without a removed-set.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from gateway.scheduling.base import AdmissionTicket


class FifoScheduler:
    """A :class:`gateway.scheduling.base.Scheduler` in arrival order (``fifo``; no options)."""

    def __init__(self) -> None:
        self._waiting: OrderedDict[AdmissionTicket, None] = OrderedDict()
        self._depths: dict[int, int] = {}

    def push(self, ticket: AdmissionTicket) -> None:
        """``ticket`` starts waiting, behind everyone waiting already.

        Raises:
            ValueError: it is waiting already.
        """
        if ticket in self._waiting:
            raise ValueError(f"request {ticket.request_id} is waiting already")
        self._waiting[ticket] = None
        self._depths[ticket.priority] = self._depths.get(ticket.priority, 0) + 1

    def pop(self, *, urgent: bool = False) -> AdmissionTicket | None:
        """The longest-waiting ticket, removed; None when none waits (or ``urgent``: no
        waiter is urgent to ``fifo``)."""
        if urgent or not self._waiting:
            return None
        ticket, _ = self._waiting.popitem(last=False)
        self._forget(ticket)
        return ticket

    def remove(self, ticket: AdmissionTicket) -> bool:
        """Take ``ticket`` out of the queue; False if it was not waiting."""
        if ticket not in self._waiting:
            return False
        del self._waiting[ticket]
        self._forget(ticket)
        return True

    def __len__(self) -> int:
        return len(self._waiting)

    def started(self, ticket: AdmissionTicket) -> None:
        """Nothing to count: the order does not depend on service."""

    def finished(self, ticket: AdmissionTicket, input_tokens: int, output_tokens: int) -> None:
        """Nothing to count: the order does not depend on service."""

    def depths(self) -> Mapping[int, int]:
        """Tickets waiting per priority band (bands with none are left out)."""
        return dict(self._depths)

    def service(self) -> Mapping[str, float]:
        """Always empty: ``fifo`` keeps no service counts."""
        return {}

    def _forget(self, ticket: AdmissionTicket) -> None:
        left = self._depths[ticket.priority] - 1
        if left:
            self._depths[ticket.priority] = left
        else:
            del self._depths[ticket.priority]
