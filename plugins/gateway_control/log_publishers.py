"""The ``log`` budget and metric publishers: crossed budget thresholds and the control plane's
measurements as log lines of ``gateway.control`` (the defaults: nothing to set up; EventBridge
and CloudWatch are plugin ``gateway_aws``'s)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.control.base import BudgetCrossing, MetricPoint
from gateway.governance.records import NANOS_PER_USD

log = logging.getLogger("gateway.control")


class LogBudgetPublisher:
    """One warning per crossing: scope, window, period, threshold and the US-dollar figures."""

    async def publish(self, crossings: Sequence[BudgetCrossing]) -> None:
        for c in crossings:
            log.warning(
                "budget threshold crossed: %s %s budget (%s) at %g%%: $%.9f of $%.9f",
                c.scope,
                c.window,
                c.period,
                c.threshold * 100,
                c.spent_nanos / NANOS_PER_USD,
                c.limit_nanos / NANOS_PER_USD,
            )

    async def aclose(self) -> None:
        """Nothing to release."""


class LogMetricPublisher:
    """One info line per point: ``namespace name{dimensions} value unit``."""

    async def put(self, namespace: str, points: Sequence[MetricPoint]) -> None:
        for p in points:
            dims = ",".join(f"{k}={v}" for k, v in sorted(p.dimensions.items()))
            log.info("metric %s %s{%s} %g %s", namespace, p.name, dims, p.value, p.unit)

    async def aclose(self) -> None:
        """Nothing to release."""
