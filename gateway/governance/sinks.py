"""The usage-sink contract (``register_usage_sinks``), and the alert-sink contract
(``register_alert_sinks``).

Every request leaves one :class:`UsageRecord`, and every admin action one :class:`AuditRecord`.
Both are written after the response has gone, through a bounded buffer per sink
(:mod:`gateway.governance.ledger`) that hands each sink batches: a sink never delays a request,
and a slow or failed sink loses records only when its buffer overflows (counted in a metric).
Sinks are append-only stores (SQLite on one box, a Redis stream or a file for a fleet) that the
control plane folds into its ledger. A batch may be delivered again after a failure, so a sink
(or what reads it) must be idempotent by ``request_id`` (``audit_id`` for audit records).

A sink that can also answer spend queries implements :class:`SpendReader`; ``/admin/spend`` and
``gateway spend`` read the first such sink configured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from gateway.cost import base
from gateway.governance.limiter import Alert


@dataclass(slots=True, kw_only=True)
class UsageRecord(base.UsageRecord):
    """What one request consumed and cost, by whom, when and how it ended.

    Extends the cost policy's record (``model``, ``backend`` and the token counts, passed first
    and by position) with keyword-only facts for the ledger.

    Attributes:
        request_id: the ``x-request-id``; the idempotency key.
        key_id: the caller's key id (``Principal.key_id``; None when anonymous).
        tenant: the caller's tenant (None for none).
        cost_nanos: what the request cost, in nano-dollars (exact; ``cost_usd`` for display).
        status: the HTTP status the client got (200, or the error's; 499: the client left).
        started_at: wall-clock seconds (Unix time) when the request arrived.
        finished_at: wall-clock seconds when its last byte went out.
        endpoint: the API called (``chat``, ``responses``, ``messages``...).
        cached: answered from the response cache (no upstream call).
        coalesced: answered by sharing an identical request's upstream call.
        reserved_tokens: tokens the limiter reserved before dispatch (0: none).
        error_code: the error's ``code`` when the request failed (``rate_limit_exceeded``...).
        parent_id: for a step of an agent's run, the run's request id (its own record carries
            no tokens or money: its steps do, so nothing is counted twice).
        agent: the agent (or workflow) whose run made this step.
        step: the step's number in that run (0: not a step).
        route: why the step's model was chosen (the agent's routing policy), if it chose.
    """

    request_id: str
    key_id: str | None
    tenant: str | None
    cost_nanos: int
    status: int
    started_at: float
    finished_at: float
    endpoint: str = ""
    cached: bool = False
    coalesced: bool = False
    reserved_tokens: int = 0
    error_code: str | None = None
    parent_id: str | None = None
    agent: str | None = None
    step: int = 0
    route: str | None = None

    @property
    def cost_usd(self) -> float:
        return self.cost_nanos / 1_000_000_000

    @property
    def latency_s(self) -> float:
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One admin action: who did what to which record, when, and the record before and after
    (as plain JSON-able mappings, secret hashes removed).

    Attributes:
        audit_id: unique id (the idempotency key).
        at: Unix time.
        actor: who acted: ``master`` or ``key:<id>`` (a tenant admin key).
        action: ``key.create``, ``key.update``, ``key.revoke``, ``tenant.create``...
        target: the record's id (key id or tenant name).
        tenant: the tenant concerned (None for none).
        before: the record before (None when created).
        after: the record after (None when deleted).
    """

    audit_id: str
    at: float
    actor: str
    action: str
    target: str
    tenant: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@runtime_checkable
class UsageSink(Protocol):
    """An append-only destination for usage and audit records."""

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Store a batch (in order). Raise to have it retried later; may see it again.

        Raises:
            Exception: the batch was not stored; the buffer keeps it and tries again.
        """
        ...

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Store a batch of audit records (same rules as :meth:`write`)."""
        ...

    async def aclose(self) -> None:
        """Flush and release connections (called once, at the gateway's shutdown, after the
        last batch)."""
        ...


SpendDimension = Literal["tenant", "key", "model", "day"]


@dataclass(frozen=True, slots=True)
class SpendQuery:
    """A spend report's shape.

    Attributes:
        group_by: the dimensions rows are grouped by, in order.
        tenant: only this tenant's requests (a tenant admin's queries always carry it).
        key_id: only this key's requests.
        model: only this model group's.
        since: Unix time, inclusive (None: from the start).
        until: Unix time, exclusive (None: up to now).
    """

    group_by: tuple[SpendDimension, ...] = ("tenant",)
    tenant: str | None = None
    key_id: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One group of a spend report: the dimension values (``day`` as ``YYYY-MM-DD`` UTC) and
    the sums."""

    keys: dict[str, str | None]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_nanos: int


@runtime_checkable
class SpendReader(Protocol):
    """A sink that can answer spend reports from what it stored."""

    async def spend(self, query: SpendQuery) -> list[SpendRow]:
        """Rows grouped by ``query.group_by``, sorted by those keys."""
        ...

    async def audit_log(self, *, tenant: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """The latest audit records (of ``tenant`` when given), newest first."""
        ...


@runtime_checkable
class AlertSink(Protocol):
    """Where budget alerts go (a log, a webhook, a Redis channel)."""

    async def send(self, alert: Alert, context: dict[str, Any]) -> None:
        """Deliver one alert; ``context`` carries the scope's tenant and key id and the US-dollar
        figures. May raise; the gateway logs the failure and goes on."""
        ...

    async def aclose(self) -> None:
        """Release connections (once, at shutdown)."""
        ...


UsageSinkFactory: TypeAlias = Callable[..., UsageSink]
"""What ``register_usage_sinks`` registers; called with the sink's config options as keyword
arguments (``TypeError``/``ValueError`` for bad ones become config errors)."""

AlertSinkFactory: TypeAlias = Callable[..., AlertSink]
"""What ``register_alert_sinks`` registers; called with the sink's config options."""
