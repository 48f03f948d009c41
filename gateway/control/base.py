"""Contracts of the control plane: the shared store, the usage ledger and its archive, budget
events, metric publishers and fleet scalers.

The control plane's jobs (:mod:`gateway.control`: publish-config, keys, usage-rollup,
health-sweep, scale-fleet) are plain functions over these Protocols; each kind is a plugin hook
(``hookspecs.py``), with local built-ins (Redis, SQLite, files, the log: plugin
``gateway_control``) and AWS ones (S3, DynamoDB, EventBridge, CloudWatch, Auto Scaling: plugin
``gateway_aws``). No AWS type appears here: the core names no vendor.

Money is in integer nano-dollars (``gateway.governance.records.NANOS_PER_USD``), as everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from gateway.governance.sinks import UsageRecord

# -- the shared store ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One published configuration.

    Attributes:
        version: increasing from 1, assigned by the store at publication.
        text: the YAML as uploaded (``${VAR}`` left for each replica to interpolate).
        source: where it came from (``s3://bucket/key``, a file path).
        published_at: Unix time of the publication.
        digest: SHA-256 of ``text`` (hex): replicas compare it to know what they run.
    """

    version: int
    text: str
    source: str
    published_at: float
    digest: str


@dataclass(frozen=True, slots=True)
class HealthHint:
    """What the health sweep saw of one backend, from outside the data plane.

    Attributes:
        group: the model group.
        backend: the backend's name.
        healthy: it answered its probe.
        latency_ms: the probe's round trip (None when it did not answer).
        checked_at: Unix time of the probe.
        error: why it failed, when it did.
    """

    group: str
    backend: str
    healthy: bool
    latency_ms: float | None
    checked_at: float
    error: str | None = None


class ControlStore(Protocol):
    """Published config versions, health hints and the jobs' small state (scaler cooldowns),
    shared by the control plane and every gateway replica (Redis for a fleet, files for one box).

    Every method raises ``gateway.errors.ServiceUnavailableError`` when the store cannot be
    reached.
    """

    async def publish_config(self, text: str, source: str) -> ConfigVersion:
        """Store ``text`` as the next version and make it current, atomically (two publishers
        never get the same version)."""
        ...

    async def current_config(self) -> ConfigVersion | None:
        """The current version (None before the first publication)."""
        ...

    async def current_version(self) -> int:
        """The current version's number (0 before the first): cheap, what replicas poll."""
        ...

    async def config_version(self, version: int) -> ConfigVersion | None:
        """Version ``version``, if kept."""
        ...

    async def config_versions(self, limit: int = 20) -> list[ConfigVersion]:
        """The newest ``limit`` versions, newest first."""
        ...

    async def put_health(self, hints: Sequence[HealthHint]) -> None:
        """Replace the health hints (the last sweep's)."""
        ...

    async def health(self) -> list[HealthHint]:
        """The last sweep's hints."""
        ...

    async def get_state(self, name: str) -> Mapping[str, Any]:
        """A job's small state (``{}`` when none was put)."""
        ...

    async def put_state(self, name: str, state: Mapping[str, Any]) -> None:
        """Replace a job's small state (JSON-able values)."""
        ...

    async def aclose(self) -> None: ...


ControlStoreFactory: TypeAlias = Callable[..., "ControlStore"]
"""``register_control_stores``: ``factory(**options)``; ``TypeError``/``ValueError`` for bad
options."""


# -- the usage ledger --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerTotal:
    """Spend and tokens of one scope and period, after a fold.

    Attributes:
        scope: ``tenant:<name>``, ``key:<id>``, or ``model:<group>``.
        period: ``2026-12-01`` (a day) or ``2026-12`` (a month), UTC.
        cost_nanos / prompt_tokens / completion_tokens / requests: the totals now.
        added_nanos: what this fold added to ``cost_nanos`` (so the total before it was
            ``cost_nanos - added_nanos``: what budget thresholds are checked against).
    """

    scope: str
    period: str
    cost_nanos: int
    prompt_tokens: int
    completion_tokens: int
    requests: int
    added_nanos: int


@dataclass(frozen=True, slots=True)
class FoldResult:
    """What a fold did.

    Attributes:
        counted: request ids folded in now.
        duplicates: request ids already counted before (a redelivery): nothing added.
        totals: the totals the counted records changed.
    """

    counted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    totals: list[LedgerTotal] = field(default_factory=list)


class UsageLedger(Protocol):
    """The durable ledger of spend and tokens per tenant, key, model group and day (and month),
    folded from usage records; idempotent by request id."""

    async def fold(self, records: Sequence[UsageRecord]) -> FoldResult:
        """Add each record not counted before to its totals (atomic increments: concurrent
        folds never lose an update) and remember its request id.

        Raises:
            ServiceUnavailableError: the ledger cannot be reached; nothing of the batch may be
                assumed counted (a retry is safe: counted ids are skipped).
        """
        ...

    async def totals(self, scope: str, period: str) -> LedgerTotal | None:
        """The totals of one scope and period, if any."""
        ...

    async def aclose(self) -> None: ...


UsageLedgerFactory: TypeAlias = Callable[..., "UsageLedger"]
"""``register_usage_ledgers``: ``factory(**options)``."""


class RecordArchive(Protocol):
    """Where raw usage records are kept as JSON lines, by date (S3, a directory)."""

    async def put(self, day: str, name: str, data: bytes) -> str:
        """Store ``data`` (JSON lines) as object ``name`` of ``day`` (``2026-12-01``); return
        where it went. Writing the same name again replaces it (a redelivered batch)."""
        ...

    async def aclose(self) -> None: ...


RecordArchiveFactory: TypeAlias = Callable[..., "RecordArchive"]
"""``register_record_archives``: ``factory(**options)``."""


@dataclass(frozen=True, slots=True)
class BudgetCrossing:
    """A budget threshold the ledger's totals crossed in one fold.

    Attributes:
        scope: ``tenant:<name>`` or ``key:<id>``.
        window: the budget's window (``day``, ``month``).
        period: the period crossed in (``2026-12-01``, ``2026-12``).
        threshold: the fraction crossed (0.8, 0.9, 1.0).
        spent_nanos / limit_nanos: the total after the fold, and the budget.
    """

    scope: str
    window: str
    period: str
    threshold: float
    spent_nanos: int
    limit_nanos: int


class BudgetPublisher(Protocol):
    """Where crossed budget thresholds are announced (EventBridge, the log)."""

    async def publish(self, crossings: Sequence[BudgetCrossing]) -> None: ...

    async def aclose(self) -> None: ...


BudgetPublisherFactory: TypeAlias = Callable[..., "BudgetPublisher"]
"""``register_budget_publishers``: ``factory(**options)``."""


class MetricPublisher(Protocol):
    """Where the control plane's measurements go (CloudWatch, the log)."""

    async def put(self, namespace: str, points: Sequence[MetricPoint]) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One measurement: ``name`` (``BackendHealthy``), ``value``, ``unit`` (``Count``,
    ``Milliseconds``), and its dimensions (``{"group": ..., "backend": ...}``)."""

    name: str
    value: float
    unit: str = "None"
    dimensions: Mapping[str, str] = field(default_factory=dict)


MetricPublisherFactory: TypeAlias = Callable[..., "MetricPublisher"]
"""``register_metric_publishers``: ``factory(**options)``."""


# -- fleet scaling -----------------------------------------------------------------------------


class FleetScaler(Protocol):
    """Changes how many replicas serve a model group (an Auto Scaling group, a Deployment).

    Raises ``gateway.errors.ServiceUnavailableError`` when it cannot reach its API.
    """

    async def current(self) -> int:
        """The replicas asked for now (the desired capacity)."""
        ...

    async def set_desired(self, replicas: int) -> None:
        """Ask for ``replicas``."""
        ...

    async def aclose(self) -> None: ...


FleetScalerFactory: TypeAlias = Callable[..., "FleetScaler"]
"""``register_fleet_scalers``: ``factory(**options)``, once per model group that names it."""


@dataclass(frozen=True, slots=True)
class GroupLoad:
    """One model group's load, summed over its backends (what scaling decides on).

    Attributes:
        group: the model group.
        replicas: backends reporting.
        waiting: requests queued in their engines (vLLM ``num_requests_waiting``).
        running: requests in their running batches.
        kv_cache_usage: the mean share of KV cache in use (0 to 1).
        gateway_in_flight: requests the gateway replicas have outstanding on them.
    """

    group: str
    replicas: int
    waiting: float
    running: float
    kv_cache_usage: float
    gateway_in_flight: float = 0.0


UsageRecords: TypeAlias = Sequence[UsageRecord]
