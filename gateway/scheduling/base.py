"""The scheduler contract (``register_schedulers``).

When a model group is saturated (every routable backend at its cap, or its engines reporting a
queue or a full KV cache), new requests wait in the gateway instead of piling onto the engines.
The core owns the waiting (:mod:`gateway.scheduling.admission`): saturation, deadlines, queue
caps, disconnects, metrics. A **scheduler** only decides the order: who goes next when capacity
frees. It is a plain data structure, called from one event loop, never concurrently::

    scheduler.push(ticket)        # a request starts waiting
    scheduler.pop()               # capacity freed: the next one (or None)
    scheduler.pop(urgent=True)    # only the group's headroom is free: the next urgent one
    scheduler.remove(ticket)      # a waiter left (deadline, disconnect)
    scheduler.started(ticket)     # a popped request was admitted
    scheduler.finished(ticket, input_tokens, output_tokens)   # it ended, with what it used

A request admitted at once (nothing waits, the group is not saturated) is not shown to the
scheduler: service is counted while the group is contended, and the uncontended path costs no
bookkeeping. In a group with a ``headroom``, though, every admission is ``started`` (urgency
may depend on what each tenant runs).

Why not a scheduler that owns its own waiting (``async with scheduler.admit(ticket)``): every
plugin would then re-implement deadlines, cancellation and the saturation signal, and each would
get them subtly wrong; this way a scheduler is twenty lines and cannot leak a slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

from gateway.identity import Principal


@dataclass(slots=True, kw_only=True, eq=False)
class AdmissionTicket:
    """A request as the scheduler knows it (compared by identity: each is one request; read
    only, though not frozen: a frozen dataclass's ``__init__`` costs several times more, on a
    path every scheduled request takes).

    Attributes:
        request_id: the ``x-request-id``.
        model: the model group the request is for (capacity is per group).
        principal: the caller (``tenant`` and ``key_id`` for fair sharing).
        priority: higher goes first; the caller's default unless the request asked for its
            own, within what its key allows.
        weight: the caller's fair-share weight (its tenant's, else its key's; 1 by default).
        input_tokens: the prompt's tokens (estimated).
        output_tokens: the output asked for (``max_tokens``, else the group's default).
        deadline: ``time.monotonic()`` after which the client no longer waits.
        stream: whether the client streams.
        enqueued_at: ``time.monotonic()`` when it arrived.
    """

    request_id: str
    model: str
    principal: Principal
    priority: int = 0
    weight: float = 1.0
    input_tokens: int = 0
    output_tokens: int = 0
    deadline: float = float("inf")
    stream: bool = False
    enqueued_at: float = 0.0

    @property
    def tenant(self) -> str | None:
        """The caller's tenant (None for none), the usual unit of fair sharing."""
        return self.principal.tenant

    @property
    def share_key(self) -> str:
        """Who this request's service is counted for: its tenant, else its key, else
        ``anonymous``."""
        if self.principal.tenant is not None:
            return f"tenant:{self.principal.tenant}"
        if self.principal.key_id is not None:
            return f"key:{self.principal.key_id}"
        return "anonymous"

    @property
    def estimated_service(self) -> float:
        """Its expected service in the Virtual Token Counter's measure: input tokens plus twice
        the output tokens (before the weight)."""
        return self.input_tokens + 2 * self.output_tokens

    def time_left(self) -> float:
        """Seconds until :attr:`deadline` (negative once past it)."""
        return self.deadline - time.monotonic()


@runtime_checkable
class Scheduler(Protocol):
    """Orders one model group's waiting requests (see the module docstring)."""

    def push(self, ticket: AdmissionTicket) -> None:
        """``ticket`` starts waiting."""
        ...

    def pop(self, *, urgent: bool = False) -> AdmissionTicket | None:
        """The waiting ticket to admit next, removed from the queue; None when none waits.

        With ``urgent``, only the group's headroom is free (``scheduling.headroom``: slots held
        back for requests that must not wait for a running one to end): the next waiter that
        may take it, or None when none may. Which are urgent is the scheduler's to say (a
        high band; a tenant below its share); a scheduler with no notion of urgency returns
        None, and the headroom stays unused."""
        ...

    def remove(self, ticket: AdmissionTicket) -> bool:
        """Take a waiting ticket out (its deadline passed, its client left); False if it was
        not waiting."""
        ...

    def __len__(self) -> int:
        """How many tickets wait."""
        ...

    def started(self, ticket: AdmissionTicket) -> None:
        """``ticket`` was admitted after :meth:`pop`: its service begins."""
        ...

    def finished(self, ticket: AdmissionTicket, input_tokens: int, output_tokens: int) -> None:
        """A ticket :meth:`started` ended, having used these tokens (its estimate when
        unknown). Also called, with 0 and 0, for a ticket popped whose client left before it
        could start: whatever the pop counted is to be uncounted."""
        ...

    def depths(self) -> Mapping[int, int]:
        """Tickets waiting per priority band."""
        ...

    def service(self) -> Mapping[str, float]:
        """Service counted per tenant (``share_key``), for metrics; empty when not kept."""
        ...


SchedulerFactory: TypeAlias = Callable[..., Scheduler]
"""What ``register_schedulers`` registers; called with the scheduler's config options as keyword
arguments, once per model group that names it. Raises TypeError/ValueError on bad options."""
