"""Stage 7, admission: a request's ticket for its group's scheduler, and its priority.

A request's priority is its key's ``priority`` (else its tenant's; else 0), unless it asks for
its own with the ``priority`` body field or the ``x-gateway-priority`` header, which may lower
it freely but raise it only up to the key's (else the tenant's) ``max_priority``; asking for
more than that is refused with 400 naming the field, so a client learns its ceiling instead of
being silently demoted. Its weight and queue timeout are its tenant's (else its key's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.errors import InvalidRequestError
from gateway.pipeline.context import RequestContext
from gateway.routes.calls import ClientDisconnectedError
from gateway.scheduling.admission import Admission, GroupAdmission
from gateway.scheduling.base import AdmissionTicket
from gateway.settings_scheduling import SchedulingSettings

PRIORITY_HEADER = "x-gateway-priority"
_OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
_DEFAULT_OUTPUT = 256  # what a request naming no ceiling is assumed to write, for ordering only


def asked_priority(ctx: RequestContext) -> int | None:
    """The priority the request asked for (body ``priority`` or the header), if any.

    Raises:
        InvalidRequestError: it is not an integer (naming the field).
    """
    raw: Any = getattr(ctx.payload, "priority", None)
    if raw is None and b'"priority"' in ctx.body:  # decode the body only when it may say
        raw = ctx.raw.get("priority")
    where = "priority"
    if raw is None:
        raw = ctx.headers.get(PRIORITY_HEADER)
        where = PRIORITY_HEADER
        if raw is None:
            return None
        try:
            raw = int(raw)
        except ValueError:
            raise InvalidRequestError(
                f"`{PRIORITY_HEADER}` must be an integer, got `{raw}`.", param=where
            ) from None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidRequestError("`priority` must be an integer.", param=where)
    return raw


def priority_of(ctx: RequestContext) -> int:
    """The request's scheduling priority (see the module docstring).

    Raises:
        InvalidRequestError: it asked for more than its key allows.
    """
    principal = ctx.principal
    default = principal.priority
    asked = asked_priority(ctx)
    if asked is None or asked <= default:
        return default if asked is None else asked
    account = principal.account
    ceiling = None
    if account is not None:
        ceiling = account.key.max_priority
        if ceiling is None and account.tenant is not None:
            ceiling = account.tenant.max_priority
    if ceiling is None or asked > ceiling:
        raise InvalidRequestError(
            f"Priority {asked} is above what this key may ask for ({max(default, ceiling or 0)}).",
            param="priority",
        )
    return asked


def ticket_for(ctx: RequestContext, settings: SchedulingSettings) -> AdmissionTicket:
    """The request's admission ticket.

    Raises:
        InvalidRequestError: a bad or too high ``priority``.
    """
    group = ctx.model_group
    principal = ctx.principal
    account = principal.account
    weight, timeout_s = 1.0, settings.queue_timeout_s
    if account is not None:
        holder = account.tenant if account.tenant is not None else account.key
        weight = holder.weight
        own = account.key.queue_timeout_s or (
            account.tenant.queue_timeout_s if account.tenant is not None else None
        )
        timeout_s = own or timeout_s
    now = time.monotonic()
    return AdmissionTicket(
        request_id=ctx.request_id,
        model=group.name,
        principal=principal,
        priority=priority_of(ctx),
        weight=weight,
        input_tokens=len(ctx.body) // 4 + 1,  # bytes over four: an estimate good for ordering
        output_tokens=_output_of(ctx),
        deadline=now + timeout_s,
        stream=ctx.stream,
        enqueued_at=now,
    )


def _output_of(ctx: RequestContext) -> int:
    for name in _OUTPUT_FIELDS:
        value = getattr(ctx.payload, name, None)
        if isinstance(value, int) and value > 0:
            return value
    configured = ctx.model_group.settings.reserve_output_tokens
    return configured if configured is not None else _DEFAULT_OUTPUT


async def wait_for_admission(ctx: RequestContext, gate: GroupAdmission) -> Admission:
    """Wait for ``ctx``'s admission to its group (at once when there is room).

    The client's ``priority`` body field is the gateway's to read: it goes upstream only as
    the request's priority for vLLM (``forward_priority``, negated: vLLM serves lower values
    first), and is taken out otherwise, so that no other backend is sent a field it may refuse.

    Raises:
        InvalidRequestError: a bad or too high ``priority``.
        RateLimitError: the queue is full, or the wait passed the deadline (429).
        UpstreamUnavailableError: no backend could take it by the deadline (503).
    """
    settings = gate.settings
    ticket = ticket_for(ctx, settings)
    if settings.forward_priority:
        ctx.raw["priority"] = -ticket.priority
        ctx.body_changed()
    elif b'"priority"' in ctx.body and "priority" in ctx.raw:
        del ctx.raw["priority"]
        ctx.body_changed()
    admission = gate.try_admit(ticket)
    if admission is not None:
        return admission
    if ctx.disconnected is None:
        return await gate.admit(ticket)
    return await _unless_gone(gate.admit(ticket), ctx.disconnected)


async def _unless_gone(
    waiting: Coroutine[Any, Any, Admission], disconnected: Callable[[], Awaitable[None]]
) -> Admission:
    """``waiting``'s admission, unless the client goes away first: then the waiter leaves the
    queue at once (its cancellation) and :class:`ClientDisconnectedError` is raised."""
    wait = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({wait, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not wait.done():
            wait.cancel()  # it leaves the queue (a raced admission is released by the gate)
            await asyncio.gather(wait, return_exceptions=True)
    left = gone.done() and not gone.cancelled() and gone.exception() is None
    if left:
        if not wait.cancelled() and wait.exception() is None:
            wait.result().release(0, 0)  # admitted as the client left: nothing was served
        raise ClientDisconnectedError
    return wait.result()  # admitted, or the queue's refusal
