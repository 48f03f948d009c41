"""The budget gauges (remaining money, used ratio) and the usage sinks' failure counter."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gateway.governance.ledger import UsageLedger
from gateway.governance.limiter import Rule, RuleState
from gateway.governance.metrics import GovernanceMetrics
from tests.unit.governance.test_ledger import Recorder, until, usage

USD = 1_000_000_000


def budget(scope: str, limit_usd: float, used_usd: float, window: str = "day") -> RuleState:
    rule = Rule(scope, "budget", int(limit_usd * USD), window, (0.9, 1.0))
    remaining = max(0, rule.limit - int(used_usd * USD))
    return RuleState(rule, remaining, 60.0, int(used_usd * USD))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_budgets_set_the_used_ratio_and_the_remaining_money_of_tenant_scopes() -> None:
    registry = CollectorRegistry()
    metrics = GovernanceMetrics(registry)
    rate = RuleState(Rule("tenant:acme", "requests", 60), 59, 1.0)
    metrics.budgets([budget("tenant:acme", 10.0, 9.0), rate, budget("key:k1", 5.0, 5.0)])
    acme = {"scope": "tenant:acme", "window": "day"}
    assert value(registry, "gateway_budget_used_ratio", **acme) == pytest.approx(0.9)
    assert value(registry, "gateway_budget_remaining_usd", **acme) == pytest.approx(1.0)
    # A key's budget has no series unless key labels are on.
    assert value(registry, "gateway_budget_used_ratio", scope="key:k1", window="day") is None

    metrics.budgets([budget("tenant:acme", 10.0, 12.5)])  # overspent: settle charged more
    assert value(registry, "gateway_budget_used_ratio", **acme) == pytest.approx(1.25)
    assert value(registry, "gateway_budget_remaining_usd", **acme) == 0.0


def test_key_budgets_have_series_when_key_labels_are_on() -> None:
    registry = CollectorRegistry()
    GovernanceMetrics(registry, key_labels=True).budgets([budget("key:k1", 5.0, 5.0, "6h")])
    ratio = value(registry, "gateway_budget_used_ratio", scope="key:k1", window="6h")
    assert ratio == pytest.approx(1.0)


@pytest.mark.anyio
async def test_every_failed_sink_write_is_counted_by_sink() -> None:
    registry = CollectorRegistry()
    metrics = GovernanceMetrics(registry)
    down, up = Recorder(fail=3), Recorder()
    ledger = UsageLedger(
        [("redis", down), ("sqlite", up)],
        buffer_size=10,
        batch_size=1,
        flush_interval_s=0.01,
        on_failure=metrics.sink_failed,
        retry_initial_s=0.001,
        retry_max_s=0.002,
    )
    await ledger.start()
    ledger.record(usage(1))
    await until(lambda: ledger.pending == 0)
    await ledger.aclose()
    assert down.written == up.written == ["r001"]
    assert value(registry, "gateway_usage_sink_failures_total", sink="redis") == 3
    assert value(registry, "gateway_usage_sink_failures_total", sink="sqlite") is None
