"""Governance metrics: spend, budgets, limit rejections, reservations, the limiter's store, the
usage buffer and its sinks.

Label cardinality stays bounded: tenant and model group are labels; the key id only when
``governance.key_metrics`` is on (one series per key can be a lot of series).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.governance.limiter import Alert, RuleState
from gateway.telemetry.metrics import LabelledChildren

_CALL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0)


class GovernanceMetrics:
    """The governance series of one app, registered in its registry."""

    def __init__(self, registry: CollectorRegistry, *, key_labels: bool = False) -> None:
        r = self.registry = registry
        self.key_labels = key_labels
        spend_labels = ["tenant", "model", "key"] if key_labels else ["tenant", "model"]
        self.spend = Counter("gateway_spend_usd", "Spend in US dollars.", spend_labels, registry=r)
        self.budget_remaining = Gauge(
            "gateway_budget_remaining_usd",
            "Remaining budget per scope and window, as last seen by this replica.",
            ["scope", "window"],
            registry=r,
            multiprocess_mode="min",
        )
        self.budget_used = Gauge(
            "gateway_budget_used_ratio",
            "Settled spend over the budget's limit per scope and window (1: exhausted), as last "
            "seen by this replica.",
            ["scope", "window"],
            registry=r,
            multiprocess_mode="max",
        )
        self.rejections = Counter(
            "gateway_limit_rejections",
            "Requests refused by a limit, by kind (requests, tokens, parallel, budget, policy).",
            ["kind", "tenant"],
            registry=r,
        )
        self.reserved_tokens = Counter(
            "gateway_reserved_tokens", "Tokens reserved before dispatch.", ["tenant"], registry=r
        )
        self.settled_tokens = Counter(
            "gateway_settled_tokens",
            "Tokens really used by requests that had a reservation.",
            ["tenant"],
            registry=r,
        )
        self.limiter_seconds = Histogram(
            "gateway_limiter_call_seconds",
            "Latency of calls to the shared limiter store.",
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self.limiter_failures = Counter(
            "gateway_limiter_call_failures", "Failed calls to the shared limiter store.", registry=r
        )
        self.limiter_degraded = Gauge(
            "gateway_limiter_degraded",
            "1 while this replica enforces a local share because the shared store is down.",
            registry=r,
            multiprocess_mode="max",
        )
        self.usage_dropped = Counter(
            "gateway_usage_dropped",
            "Usage and audit records dropped because a sink's buffer was full.",
            ["sink"],
            registry=r,
        )
        self.sink_failures = Counter(
            "gateway_usage_sink_failures",
            "Failed writes to a usage sink (the batch stays buffered and is retried).",
            ["sink"],
            registry=r,
        )
        self.alerts = Counter(
            "gateway_budget_alerts", "Budget alerts fired, by threshold.", ["threshold"], registry=r
        )
        self._children = LabelledChildren()

    def child(self, metric: Counter, *values: str) -> Counter:
        return self._children.get(metric, *values)

    def spent(self, tenant: str | None, model: str, key: str | None, nanos: int) -> None:
        if nanos <= 0:
            return
        labels = (tenant or "-", model, key or "-") if self.key_labels else (tenant or "-", model)
        self._children.get(self.spend, *labels).inc(nanos / 1e9)

    def budgets(self, states: Sequence[RuleState]) -> None:
        """Set the remaining money and the used ratio of each budget in ``states`` (tenant
        scopes only, unless key labels are on: one series per key can be a lot of series)."""
        for state in states:
            rule = state.rule
            if rule.kind == "budget" and (self.key_labels or rule.scope.startswith("tenant:")):
                labels = (rule.scope, rule.window)
                self._children.get(self.budget_remaining, *labels).set(state.remaining / 1e9)
                # A limit below a nano-dollar rounds to 0: such a budget is spent from the start.
                used = state.used / rule.limit if rule.limit > 0 else 1.0
                self._children.get(self.budget_used, *labels).set(used)

    def rejected(self, kind: str, tenant: str | None) -> None:
        self._children.get(self.rejections, kind, tenant or "-").inc()

    def limiter_call(self, seconds: float, ok: bool) -> None:
        self.limiter_seconds.observe(seconds)
        if not ok:
            self.limiter_failures.inc()

    def degraded(self, on: bool) -> None:
        self.limiter_degraded.set(1 if on else 0)

    def dropped(self, sink: str, count: int) -> None:
        self._children.get(self.usage_dropped, sink).inc(count)

    def sink_failed(self, sink: str) -> None:
        self._children.get(self.sink_failures, sink).inc()

    def alerted(self, alert: Alert) -> None:
        self._children.get(self.alerts, f"{alert.threshold:g}").inc()
