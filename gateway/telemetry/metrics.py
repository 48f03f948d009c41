"""Prometheus metrics of the gateway.

One :class:`GatewayMetrics` per app (no global registry), so tests can build several apps. With
several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set before the workers start), values live
in shared files and ``/metrics`` on any worker renders the totals of all of them.

Labelled children are cached per label tuple: ``labels()`` costs more than the increment itself.
"""

from __future__ import annotations

import os
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

M = TypeVar("M", Counter, Gauge, Histogram)

# From 50 microseconds: the gateway's own overhead is sub-millisecond.
OVERHEAD_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


def multiprocess_dir() -> str | None:
    """The shared metrics directory when running several workers, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class LabelledChildren:
    """Caches ``metric.labels(*values)`` per label tuple."""

    def __init__(self) -> None:
        self._cache: dict[tuple[object, ...], object] = {}

    def get(self, metric: M, *values: str) -> M:
        key = (id(metric), *values)
        child = self._cache.get(key)
        if child is None:
            child = self._cache[key] = metric.labels(*values)
        return child  # type: ignore[return-value]


class ExchangeMetrics:
    """The labelled children one (model, backend, endpoint) records into, looked up once per
    request instead of once per metric."""

    __slots__ = (
        "_labels",
        "_requests",
        "_statuses",
        "backend_in_flight",
        "breaker_state",
        "completion_tokens",
        "overhead_seconds",
        "prompt_tokens",
        "request_seconds",
        "upstream_seconds",
    )

    def __init__(self, m: GatewayMetrics, model: str, backend: str, endpoint: str) -> None:
        self._requests = m.requests
        self._statuses: dict[int, Counter] = {}
        self._labels = (model, backend, endpoint)
        self.request_seconds = m.request_seconds.labels(model, endpoint)
        self.upstream_seconds = m.upstream_seconds.labels(model, backend)
        self.overhead_seconds = m.overhead_seconds.labels(endpoint)
        self.prompt_tokens = m.prompt_tokens.labels(model, backend)
        self.completion_tokens = m.completion_tokens.labels(model, backend)
        self.breaker_state = m.breaker_state.labels(model, backend)
        self.backend_in_flight = m.backend_in_flight.labels(model, backend)

    def request(self, status: int, total_s: float) -> None:
        """Count a finished request and its end-to-end latency."""
        counter = self._statuses.get(status)
        if counter is None:
            counter = self._statuses[status] = self._requests.labels(*self._labels, str(status))
        counter.inc()
        self.request_seconds.observe(total_s)

    def tokens(self, prompt: int, completion: int) -> None:
        """Add token usage reported by the upstream."""
        if prompt:
            self.prompt_tokens.inc(prompt)
        if completion:
            self.completion_tokens.inc(completion)


class GatewayMetrics:
    """The gateway's metrics and the cheap methods the request path records them with."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Requests by model, backend, endpoint, status.",
            ["model", "backend", "endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "gateway_request_duration_seconds",
            "End-to-end request latency seen by the gateway.",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "gateway_upstream_duration_seconds",
            "Time waiting on the upstream (to the full body, or to the stream's headers).",
            ["model", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead_seconds = Histogram(
            "gateway_overhead_duration_seconds",
            "Gateway time: total minus upstream wait.",
            ["endpoint"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.ttft_seconds = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time to the first streamed chunk.",
            ["model", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight",
            "Requests being served now.",
            ["model"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.prompt_tokens = Counter(
            "gateway_prompt_tokens",
            "Prompt tokens reported upstream.",
            ["model", "backend"],
            registry=r,
        )
        self.completion_tokens = Counter(
            "gateway_completion_tokens",
            "Completion tokens reported upstream.",
            ["model", "backend"],
            registry=r,
        )
        self.routing_decisions = Counter(
            "gateway_routing_decisions",
            "Backends chosen, by strategy and reason.",
            ["model", "strategy", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "gateway_retries", "Retried upstream calls.", ["model", "backend"], registry=r
        )
        self.fallbacks = Counter(
            "gateway_fallbacks",
            "Requests sent on to a fallback group.",
            ["model", "fallback", "reason"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "gateway_backend_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["model", "backend"],
            multiprocess_mode="max",
            registry=r,
        )
        self.backend_up = Gauge(
            "gateway_backend_up",
            "1 while a backend is routable (healthy, breaker admitting, not draining), else 0; "
            "refreshed from the catalog whenever /metrics is read.",
            ["model", "backend"],
            multiprocess_mode="max",
            registry=r,
        )
        self.backend_in_flight = Gauge(
            "gateway_backend_in_flight",
            "Requests outstanding on a backend.",
            ["model", "backend"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.backend_errors = Counter(
            "gateway_backend_errors",
            "Failed upstream attempts by backend and kind.",
            ["model", "backend", "kind"],
            registry=r,
        )
        self.cache_requests = Counter(
            "gateway_cache_requests",
            "Cache lookups by result (hit, miss, bypass) and tier.",
            ["model", "result", "tier"],
            registry=r,
        )
        self.cache_errors = Counter(
            "gateway_cache_errors", "Failed cache tier calls.", ["tier"], registry=r
        )
        self._children = LabelledChildren()
        self._exchanges: dict[tuple[str, str, str], ExchangeMetrics] = {}

    def exchange(self, model: str, backend: str, endpoint: str) -> ExchangeMetrics:
        """The cached children of one (model, backend, endpoint)."""
        key = (model, backend, endpoint)
        found = self._exchanges.get(key)
        if found is None:
            found = self._exchanges[key] = ExchangeMetrics(self, model, backend, endpoint)
        return found

    def child(self, metric: M, *values: str) -> M:
        """The cached labelled child of ``metric``."""
        return self._children.get(metric, *values)

    def record_request(
        self, model: str, backend: str, endpoint: str, status: int, total_s: float
    ) -> None:
        """Count a finished request and its end-to-end latency."""
        self.exchange(model, backend, endpoint).request(status, total_s)

    def record_upstream(
        self, model: str, backend: str, endpoint: str, upstream_s: float, overhead_s: float
    ) -> None:
        """Record time spent waiting on the upstream and the gateway's own share."""
        exchange = self.exchange(model, backend, endpoint)
        exchange.upstream_seconds.observe(upstream_s)
        exchange.overhead_seconds.observe(overhead_s)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type; totals across workers when multi-process."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @staticmethod
    def mark_process_dead() -> None:
        """Drop this worker's live gauges from the shared files (called at shutdown)."""
        if multiprocess_dir():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
