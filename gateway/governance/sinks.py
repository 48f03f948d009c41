"""The usage-sink contract (``register_usage_sinks``).

Every finished request leaves one :class:`UsageRecord`. Records are written after the response
has gone, through a bounded buffer that hands a sink batches: a sink never delays a request,
and a slow or failed sink loses records only when its buffer overflows (counted in a metric).
Sinks are append-only stores (SQLite on one box, a Redis stream or a queue for a fleet) that the
control plane folds into its ledger. A batch may be delivered again after a failure, so a sink
(or what reads it) must be idempotent by ``request_id``: a replay counts nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

from gateway.cost import base


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord(base.UsageRecord):
    """What one request consumed and cost, by whom, when and how it ended.

    Extends the cost policy's record (``model``, ``backend`` and the token counts, passed first
    and by position) with keyword-only facts for the ledger.

    Attributes:
        request_id: the ``x-request-id``; the idempotency key.
        key_id: the caller's key id (``Principal.key_id``; None when anonymous).
        tenant: the caller's tenant (None for none).
        cost_usd: what the model group's cost policy charged.
        status: the HTTP status the client got (200, or the error's).
        started_at: wall-clock seconds (Unix time) when the request arrived.
        finished_at: wall-clock seconds when its last byte went out.
        cached: answered from the response cache (no upstream call).
    """

    request_id: str
    key_id: str | None
    tenant: str | None
    cost_usd: float
    status: int
    started_at: float
    finished_at: float
    cached: bool = False


@runtime_checkable
class UsageSink(Protocol):
    """An append-only destination for usage records."""

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Store a batch (in order). Raise to have it retried later; may see it again.

        Raises:
            Exception: the batch was not stored; the buffer keeps it and tries again.
        """
        ...

    async def aclose(self) -> None:
        """Flush and release connections (called once, at the gateway's shutdown, after the
        last batch)."""
        ...


UsageSinkFactory: TypeAlias = Callable[..., UsageSink]
"""What ``register_usage_sinks`` registers; called with the sink's config options as keyword
arguments (``TypeError``/``ValueError`` for bad ones become config errors)."""
