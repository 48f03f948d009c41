"""Admission control: while a model group is saturated, requests wait in the gateway.

The core owns the waiting; a :class:`~gateway.scheduling.base.Scheduler` only orders the
waiters. Per request, the pipeline calls::

    admission = await group_admission.admit(ticket)   # may wait; 429/503 on refusal
    ...                                               # route, dispatch, stream
    admission.release(input_tokens, output_tokens)    # at the very end (stream end included)

and whatever learns that capacity may have freed (fresh engine metrics, a backend back up)
calls :meth:`GroupAdmission.poke`. There is no polling loop: waiters are woken by releases and
pokes, and leave on their deadline or when their client goes away.

The fast path (nothing waits, the group is not saturated) takes no lock and allocates only the
:class:`Admission`: it runs for every request of a group with a ``scheduling:`` section.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from gateway.config_loader import ConfigError
from gateway.errors import GatewayError, RateLimitError, UpstreamUnavailableError
from gateway.plugins import Registry, build_registered
from gateway.routing.backends import ModelCatalog, ModelGroup
from gateway.scheduling.base import AdmissionTicket, Scheduler, SchedulerFactory
from gateway.scheduling.metrics import GroupMetrics, SchedulingMetrics
from gateway.scheduling.saturation import ENGINE_READING_MAX_AGE_S, Saturation
from gateway.settings_scheduling import SchedulingSettings

_log = logging.getLogger("gateway.scheduling")

LISTED_WAITERS = 100
"""At most this many waiting tickets in a :meth:`GroupAdmission.snapshot`."""
RETRY_AFTER_MAX_S = 60
"""The longest ``Retry-After`` the queue estimate gives (an estimate, not a promise)."""
_DRAIN_SMOOTHING = 0.2  # weight of the newest interval in the drain-interval average


class Admission:
    """One admitted request's hold on its group's capacity.

    Attributes:
        ticket: the request admitted.
    """

    __slots__ = ("_counted", "_group", "_released", "ticket")

    def __init__(self, group: GroupAdmission, ticket: AdmissionTicket, counted: bool) -> None:
        self._group = group
        self.ticket = ticket
        self._counted = counted  # the scheduler saw it start (it came through the queue)
        self._released = False

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called."""
        return self._released

    def release(self, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        """Give the slot back and tell the scheduler what the request used; the next waiter,
        if any, is admitted. Idempotent: only the first call counts.

        Args:
            input_tokens: the prompt tokens used (None: the ticket's estimate).
            output_tokens: the output tokens produced (None: the ticket's estimate).
        """
        if self._released:
            return
        self._released = True
        ticket = self.ticket
        self._group._release(
            ticket,
            ticket.input_tokens if input_tokens is None else input_tokens,
            ticket.output_tokens if output_tokens is None else output_tokens,
            self._counted,
        )


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[Admission]
    since: float  # time.monotonic() when it started waiting


class GroupAdmission:
    """Admission control of one model group.

    Args:
        group: the live model group (its backends are read at each decision).
        settings: its ``scheduling:`` section.
        scheduler: orders its waiters; called from this event loop only.
        metrics: where to record queue metrics (None: none).
        engine_max_age_s: how old an engine reading may be and still count for saturation.

    Attributes:
        admitted: requests admitted and not yet released.
    """

    __slots__ = (
        "_drain_interval_s",
        "_drained_at",
        "_metrics",
        "_saturation",
        "_waiters",
        "admitted",
        "group",
        "scheduler",
        "settings",
    )

    def __init__(
        self,
        group: ModelGroup,
        settings: SchedulingSettings,
        scheduler: Scheduler,
        metrics: SchedulingMetrics | None = None,
        *,
        engine_max_age_s: float = ENGINE_READING_MAX_AGE_S,
    ) -> None:
        self.group = group
        self.settings = settings
        self.scheduler = scheduler
        self.admitted = 0
        self._saturation = Saturation(group, settings, engine_max_age_s)
        self._metrics: GroupMetrics | None = metrics.group(group.name) if metrics else None
        # Arrival order; a ticket is here exactly while the scheduler holds it.
        self._waiters: dict[AdmissionTicket, _Waiter] = {}
        # How fast the queue drains: the smoothed time between queued admissions.
        self._drain_interval_s: float | None = None
        self._drained_at: float | None = None

    @property
    def name(self) -> str:
        """The model group's name."""
        return self.group.name

    @property
    def waiting(self) -> int:
        """Requests waiting now."""
        return len(self._waiters)

    def saturated(self) -> bool:
        """Whether the group is saturated now (:mod:`gateway.scheduling.saturation`)."""
        return self._saturation.saturated(self.admitted)

    async def admit(self, ticket: AdmissionTicket) -> Admission:
        """Admit ``ticket``, waiting while the group is saturated or others wait before it.

        The caller must :meth:`Admission.release` the result when the request ends, whatever
        the outcome. The wait is bounded by ``ticket.deadline`` (the group's
        ``queue_timeout_s`` when the ticket has none).

        Raises:
            RateLimitError: 429 ``queue_full`` (at once: ``max_queue`` requests wait), or
                ``queue_timeout`` (the deadline passed while backends were busy); both with
                ``Retry-After``.
            UpstreamUnavailableError: 503 ``queue_timeout``: the deadline passed while no
                backend of the group was routable.
            asyncio.CancelledError: the caller was cancelled while waiting (it left the queue).
        """
        admitted = self.try_admit(ticket)
        if admitted is not None:
            return admitted
        return await self._wait(ticket)

    def try_admit(self, ticket: AdmissionTicket) -> Admission | None:
        """Admit ``ticket`` at once if nothing waits and the group is not saturated (the fast
        path, a few attribute reads); None: it must wait (:meth:`admit`).

        The scheduler is not told of a request admitted this way: it orders a queue, and
        service is counted while the group is contended (a fair share's counters weigh what
        each tenant got through the queue; uncontended service is not banked against anyone,
        as idleness is not banked for anyone), so the uncontended path does no bookkeeping.
        Except with a headroom: who may take it depends on what each tenant runs, so there the
        scheduler is told of every admission (``started``), at its cost."""
        if self._waiters or self._saturation.saturated(self.admitted):
            return None
        self.admitted += 1
        if self._metrics is not None:
            self._metrics.direct.inc()
        # With a headroom, urgency compares what each tenant runs: the scheduler sees all.
        counted = self._saturation.has_headroom
        if counted:
            self.scheduler.started(ticket)
        return Admission(self, ticket, counted)

    def poke(self) -> None:
        """Capacity may have freed (fresh engine metrics, a backend back): admit waiters while
        the group is not saturated."""
        self._pump()

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the queue's length times how fast it has been
        draining (the group's ``queue_timeout_s`` before anything drained), 1 to
        :data:`RETRY_AFTER_MAX_S`."""
        interval = self._drain_interval_s
        if interval is None:
            estimate = self.settings.queue_timeout_s
        else:
            estimate = (len(self._waiters) + 1) * interval
        return min(max(1, math.ceil(estimate)), RETRY_AFTER_MAX_S)

    def snapshot(self) -> dict[str, Any]:
        """The group's admission state, for the admin API: ``admitted``, ``capacity``
        (None: no in-flight cap; headroom included), ``headroom`` (per backend),
        ``saturated``, ``queued``, ``waiting`` per band, ``tickets`` (at most
        :data:`LISTED_WAITERS`, in arrival order; ``waited_s`` since they joined the queue,
        ``time_left_s`` None without a deadline) and the scheduler's ``service``."""
        now = time.monotonic()
        tickets: list[dict[str, Any]] = []
        for ticket, waiter in self._waiters.items():
            if len(tickets) == LISTED_WAITERS:
                break
            left = ticket.deadline - now
            tickets.append(
                {
                    "request_id": ticket.request_id,
                    "share_key": ticket.share_key,
                    "priority": ticket.priority,
                    "waited_s": now - waiter.since,
                    "time_left_s": left if math.isfinite(left) else None,
                }
            )
        return {
            "scheduler": self.settings.scheduler.backend,
            "admitted": self.admitted,
            "capacity": self._saturation.capacity(),
            "headroom": self.settings.headroom,
            "saturated": self.saturated(),
            "queued": len(self._waiters),
            "max_queue": self.settings.max_queue,
            "waiting": {str(band): n for band, n in self.scheduler.depths().items()},
            "tickets": tickets,
            "service": dict(self.scheduler.service()),
        }

    async def _wait(self, ticket: AdmissionTicket) -> Admission:
        if len(self._waiters) >= self.settings.max_queue:
            if self._metrics is not None:
                self._metrics.refused.inc()
            raise RateLimitError(
                f"The queue of model `{self.name}` is full ({len(self._waiters)} requests "
                "wait); retry later.",
                code="queue_full",
                headers=self._retry_after(),
            )
        timeout = ticket.time_left()
        if not math.isfinite(ticket.deadline):
            timeout = self.settings.queue_timeout_s
        future: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        self.scheduler.push(ticket)
        self._waiters[ticket] = waiter = _Waiter(future, time.monotonic())
        # Capacity may have freed with no release or poke to pump it (a breaker's cooldown).
        self._pump()
        self._record_depths()
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            admission = self._abandon(ticket, future)
            if admission is not None:  # admitted as the deadline passed: it may go
                return admission
            if self._metrics is not None:
                self._metrics.timeouts.inc()
            raise self._timed_out(time.monotonic() - waiter.since) from None
        except asyncio.CancelledError:
            admission = self._abandon(ticket, future)
            if admission is not None:  # admitted as its client left: give the slot back
                admission.release(0, 0)
            raise

    def _abandon(
        self, ticket: AdmissionTicket, future: asyncio.Future[Admission]
    ) -> Admission | None:
        """``ticket`` stops waiting: out of the queue, or its admission if it got one."""
        if future.done() and not future.cancelled():
            return future.result()
        future.cancel()
        if self._waiters.pop(ticket, None) is not None:
            self.scheduler.remove(ticket)
            self._record_depths()
        if not self._waiters:
            self._drained_at = None
        return None

    def _timed_out(self, waited_s: float) -> GatewayError:
        headers = self._retry_after()
        if self._saturation.routable() == 0:
            return UpstreamUnavailableError(
                f"No backend of model `{self.name}` became available while the request "
                f"waited ({waited_s:.1f} s).",
                code="queue_timeout",
                headers=headers,
            )
        return RateLimitError(
            f"Model `{self.name}` is at capacity: the request waited {waited_s:.1f} s in its "
            "queue; retry later.",
            code="queue_timeout",
            headers=headers,
        )

    def _retry_after(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s())}

    def _release(
        self, ticket: AdmissionTicket, input_tokens: int, output_tokens: int, counted: bool
    ) -> None:
        self.admitted -= 1
        if not counted and not self._waiters:
            return  # the uncontended path: nothing to tell, nobody to admit
        try:
            if counted:
                self.scheduler.finished(ticket, input_tokens, output_tokens)
                if self._metrics is not None:
                    service = self.scheduler.service().get(ticket.share_key)
                    if service is not None:
                        self._metrics.service(ticket.share_key, service)
        finally:  # a failing scheduler must not strand the waiters
            self._pump()

    def _pump(self) -> None:
        """Admit waiters, in the scheduler's order, while the group is not saturated; once
        only its headroom is left, the urgent ones the scheduler picks."""
        moved = False
        saturation = self._saturation
        while self._waiters:
            if not saturation.saturated(self.admitted):
                ticket = self.scheduler.pop()
                if ticket is None:
                    _log.error(
                        "scheduler of %s has no ticket while %d wait", self.name, self.waiting
                    )
                    break
            elif saturation.has_headroom and not saturation.saturated(self.admitted, urgent=True):
                ticket = self.scheduler.pop(urgent=True)
                if ticket is None:
                    break  # nobody waiting may take the headroom
            else:
                break
            waiter = self._waiters.pop(ticket, None)
            if waiter is None or waiter.future.done():
                # Its client left (the waiter's handler has not run yet): the scheduler counted
                # the pop as running; a finish with nothing used uncounts it.
                self.scheduler.finished(ticket, 0, 0)
                continue
            self.admitted += 1
            self.scheduler.started(ticket)
            waiter.future.set_result(Admission(self, ticket, True))
            moved = True
            now = time.monotonic()
            self._note_drain(now)
            if self._metrics is not None:
                self._metrics.queued.inc()
                self._metrics.wait_seconds.observe(now - waiter.since)
        if moved:
            self._record_depths()

    def _note_drain(self, now: float) -> None:
        # Only intervals during which someone kept waiting measure the drain rate; idle time
        # between bursts would not.
        if self._drained_at is not None:
            interval = now - self._drained_at
            previous = self._drain_interval_s
            self._drain_interval_s = (
                interval
                if previous is None
                else previous + _DRAIN_SMOOTHING * (interval - previous)
            )
        self._drained_at = now if self._waiters else None

    def _record_depths(self) -> None:
        if self._metrics is not None:
            self._metrics.depths(self.scheduler.depths())


class Admissions:
    """The admission control of every model group that has a ``scheduling:`` section.

    Args:
        groups: each group's admission control by group name.
    """

    def __init__(self, groups: dict[str, GroupAdmission] | None = None) -> None:
        self._groups = dict(groups or {})

    @classmethod
    def build(
        cls,
        catalog: ModelCatalog,
        schedulers: Registry[SchedulerFactory],
        source: str,
        metrics: SchedulingMetrics | None = None,
    ) -> Admissions:
        """One :class:`GroupAdmission` per group of ``catalog`` with ``settings.scheduling``,
        each with a new scheduler from ``schedulers``.

        Args:
            source: the config file, for errors (``catalog.groups`` are in its order).

        Raises:
            ConfigError: an unknown scheduler, options it rejected, or a factory that did not
                build a :class:`~gateway.scheduling.base.Scheduler`.
        """
        groups: dict[str, GroupAdmission] = {}
        for i, group in enumerate(catalog.groups):
            settings = group.settings.scheduling
            if settings is None:
                continue
            if settings.headroom and (
                settings.max_in_flight is None or settings.headroom >= settings.max_in_flight
            ):
                raise ConfigError(
                    source,
                    f"models[{i}].scheduling.headroom",
                    "headroom is slots held back out of max_in_flight: it needs max_in_flight "
                    "and must be smaller than it",
                )
            choice = settings.scheduler
            where = f"models[{i}].scheduling.scheduler"
            scheduler = build_registered(schedulers, choice.backend, choice.options, source, where)
            if not isinstance(scheduler, Scheduler):
                raise ConfigError(
                    source,
                    f"{where}.backend",
                    f"scheduler `{choice.backend}` built a {type(scheduler).__name__}, "
                    "not a Scheduler",
                )
            if settings.headroom and "urgent" not in inspect.signature(scheduler.pop).parameters:
                raise ConfigError(
                    source,
                    f"models[{i}].scheduling.headroom",
                    f"scheduler `{choice.backend}` has no `pop(urgent=...)`: it cannot say who "
                    "may take a headroom",
                )
            groups[group.name] = GroupAdmission(group, settings, scheduler, metrics)
        return cls(groups)

    def get(self, group: str) -> GroupAdmission | None:
        """The admission control of the group named ``group`` (None: it has none)."""
        return self._groups.get(group)

    def poke_all(self) -> None:
        """:meth:`GroupAdmission.poke` every group (capacity may have freed anywhere)."""
        for admission in self._groups.values():
            admission.poke()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every group's :meth:`GroupAdmission.snapshot` by group name."""
        return {name: admission.snapshot() for name, admission in self._groups.items()}
