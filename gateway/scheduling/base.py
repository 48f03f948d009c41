"""The scheduler contract (``register_schedulers``).

A scheduler decides when a request may go to a backend: it is the admission point between the
limits (already reserved) and the routing strategy. The request path holds a ticket's admission
for as long as the upstream call runs::

    async with scheduler.admit(ticket):
        ...  # choose a backend, call it, relay the answer

so the scheduler sees both when work starts and when it ends, and can queue by priority, share
capacity fairly between tenants, or keep a model group below its saturation point. It never
picks the backend (the strategy does) and never talks to the upstream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

from gateway.identity import Principal


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionTicket:
    """What a scheduler knows about a request waiting to be admitted.

    Attributes:
        request_id: the ``x-request-id``.
        model: the model group the request is for (capacity is per group).
        principal: the caller (``tenant`` and ``key_id`` for fair sharing).
        priority: higher goes first; the caller's default unless the request set its own.
        estimated_tokens: prompt tokens (estimated) plus the output asked for (``max_tokens``,
            else the group's default): the request's weight against capacity.
        deadline: ``time.monotonic()`` after which the client no longer waits; past it the
            ticket must not be admitted.
        stream: whether the client streams (its cost is spread over time).
    """

    request_id: str
    model: str
    principal: Principal
    priority: int
    estimated_tokens: int
    deadline: float
    stream: bool = False

    @property
    def tenant(self) -> str | None:
        """The caller's tenant (None for none), the usual unit of fair sharing."""
        return self.principal.tenant

    def time_left(self) -> float:
        """Seconds until :attr:`deadline` (negative once past it)."""
        return self.deadline - time.monotonic()


@runtime_checkable
class Scheduler(Protocol):
    """Admits requests to a model group's backends."""

    def admit(self, ticket: AdmissionTicket) -> AbstractAsyncContextManager[None]:
        """Wait until ``ticket`` may be served; its admission is held inside the block.

        Entering returns at once when there is room, else waits in the scheduler's queue.
        Leaving (normally, by an exception or by cancellation when the client went away)
        frees the room, so the next ticket may enter.

        Raises (on entering):
            gateway.errors.RateLimitError: the queue is full, or the ticket would wait past its
                deadline; carries ``Retry-After`` (the client sees 429).
            gateway.errors.UpstreamUnavailableError: the group cannot serve at all now (503).
        """
        ...


SchedulerFactory: TypeAlias = Callable[..., Scheduler]
"""What ``register_schedulers`` registers; called with the scheduler's config options as keyword
arguments, once per model group that names it (``TypeError``/``ValueError`` become config
errors)."""
