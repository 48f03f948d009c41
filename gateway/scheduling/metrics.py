"""Prometheus metrics of admission control, on the app's registry (``GatewayMetrics.registry``).

- ``gateway_queue_depth{model,band}``: requests waiting, per priority band.
- ``gateway_queue_wait_seconds{model}``: how long admitted requests waited (queued ones only).
- ``gateway_queue_admitted_total{model,how}``: admissions, ``direct`` (nothing waited) or
  ``queued``.
- ``gateway_queue_timeouts_total{model}``: waiters whose deadline passed.
- ``gateway_queue_refused_total{model}``: requests refused at once (the queue was full).
- ``gateway_scheduler_service_tokens{model,tenant}``: the scheduler's service counter per
  ``share_key``, updated when a request of it finishes.

Labelled children are resolved once per group (:class:`GroupMetrics`), so a direct admission
costs one counter increment.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.telemetry.metrics import LATENCY_BUCKETS


class SchedulingMetrics:
    """The admission metrics' families on ``registry`` (build one per registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge(
            "gateway_queue_depth",
            "Requests waiting for admission, by model group and priority band.",
            ["model", "band"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.wait_seconds = Histogram(
            "gateway_queue_wait_seconds",
            "Time queued requests waited for admission.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.admitted = Counter(
            "gateway_queue_admitted",
            "Requests admitted, at once (direct) or after waiting (queued).",
            ["model", "how"],
            registry=registry,
        )
        self.timeouts = Counter(
            "gateway_queue_timeouts",
            "Waiting requests whose deadline passed.",
            ["model"],
            registry=registry,
        )
        self.refused = Counter(
            "gateway_queue_refused",
            "Requests refused at once because the queue was full.",
            ["model"],
            registry=registry,
        )
        self.service_tokens = Gauge(
            "gateway_scheduler_service_tokens",
            "The scheduler's service counter per tenant (its share key), in tokens.",
            ["model", "tenant"],
            multiprocess_mode="livesum",
            registry=registry,
        )

    def group(self, model: str) -> GroupMetrics:
        """The children one model group records into."""
        return GroupMetrics(self, model)


class GroupMetrics:
    """One model group's labelled children (see :class:`SchedulingMetrics`)."""

    __slots__ = (
        "_bands",
        "_depth",
        "_model",
        "_service",
        "_tenants",
        "direct",
        "queued",
        "refused",
        "timeouts",
        "wait_seconds",
    )

    def __init__(self, metrics: SchedulingMetrics, model: str) -> None:
        self._model = model
        self._depth = metrics.depth
        self._service = metrics.service_tokens
        self._bands: dict[int, Gauge] = {}
        self._tenants: dict[str, Gauge] = {}
        self.direct = metrics.admitted.labels(model, "direct")
        self.queued = metrics.admitted.labels(model, "queued")
        self.timeouts = metrics.timeouts.labels(model)
        self.refused = metrics.refused.labels(model)
        self.wait_seconds = metrics.wait_seconds.labels(model)

    def depths(self, depths: Mapping[int, int]) -> None:
        """Set the depth of every band seen so far (0 for those that emptied)."""
        for band in depths:
            if band not in self._bands:
                self._bands[band] = self._depth.labels(self._model, str(band))
        for band, gauge in self._bands.items():
            gauge.set(depths.get(band, 0))

    def service(self, share_key: str, tokens: float) -> None:
        """Set ``share_key``'s service counter."""
        gauge = self._tenants.get(share_key)
        if gauge is None:
            gauge = self._tenants[share_key] = self._service.labels(self._model, share_key)
        gauge.set(tokens)
