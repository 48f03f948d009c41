"""One replica's numbers for the dashboard, read from its live state (never written to).

:func:`read_sample` reads the cumulative series of the app's Prometheus registry (and the
engines' prefix-cache counters); :func:`replica_part` turns the ring of those readings and the
live objects (backends, breakers, admission queues) into this replica's *part*: rates over
``rate_window_s``, the histograms' bucket counts over ``quantile_window_s`` and the gauges, as
JSON-ready data. Parts of several replicas add up (:func:`gateway.dashboard.view.merge_parts`),
which is why a part holds rates and bucket counts rather than percentiles.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.dashboard.window import Key, Ring, Sample, bucket_deltas, rates
from gateway.routing.backends import Backend, ModelCatalog
from gateway.routing.base import EngineMetrics
from gateway.scheduling.admission import Admissions

# Counter samples read: (sample name, the label naming whose, the key's kind).
_COUNTERS = (
    ("gateway_completion_tokens_total", "model", "tokens"),
    ("gateway_completion_tokens_total", "backend", "backend_tokens"),
    ("gateway_spend_usd_total", "tenant", "spend"),
)
_HISTOGRAMS = {
    "gateway_request_duration_seconds_bucket": "latency",
    "gateway_time_to_first_token_seconds_bucket": "ttft",
}
_NOT_LOOKUPS = ("bypass",)


def read_sample(
    registry: CollectorRegistry, engines: Mapping[str, EngineMetrics], at: float
) -> tuple[Sample, dict[str, float]]:
    """The registry's cumulative series (and each engine's prefix-cache counters, by backend
    name) as a :class:`Sample` at ``at``; and the requests in flight per model group."""
    counters: dict[Key, float] = defaultdict(float)
    buckets: dict[Key, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    in_flight: dict[str, float] = {}
    for family in registry.collect():
        for s in family.samples:
            name, labels = s.name, s.labels
            if name == "gateway_requests_total":
                model = labels["model"]
                counters["requests", model] += s.value
                if int(labels["status"]) >= 500:
                    counters["errors", model] += s.value
            elif name == "gateway_cache_requests_total":
                model, result = labels["model"], labels["result"]
                if result == "hit":
                    counters["cache_hits", model] += s.value
                if result not in _NOT_LOOKUPS:
                    counters["cache_lookups", model] += s.value
            elif name == "gateway_requests_in_flight":
                in_flight[labels["model"]] = s.value
            elif (kind := _HISTOGRAMS.get(name)) is not None:
                buckets[kind, labels["model"]][float(labels["le"])] += s.value
            else:
                for counter, label, kind in _COUNTERS:
                    if name == counter and label in labels:
                        counters[kind, labels[label]] += s.value
    for backend, engine in engines.items():
        counters["prefix_queries", backend] = engine.prefix_cache_queries
        counters["prefix_hits", backend] = engine.prefix_cache_hits
    histograms = {key: [n for _, n in sorted(counts.items())] for key, counts in buckets.items()}
    return Sample(at, dict(counters), histograms), in_flight


def backend_state(backend: Backend) -> str:
    """``down`` (its health check failed), ``breaker open``, ``half-open``, ``draining`` or
    ``up``: the first that holds."""
    if not backend.health.healthy:
        return "down"
    breaker = backend.breaker
    if breaker == "open":
        return "breaker open"
    if breaker == "half_open":
        return "half-open"
    return "draining" if backend.draining else "up"


def replica_part(
    ring: Ring,
    in_flight: Mapping[str, float],
    catalog: ModelCatalog,
    admissions: Admissions | None,
    engines: Mapping[str, EngineMetrics],
    *,
    rate_window_s: float,
    quantile_window_s: float,
) -> dict[str, Any]:
    """This replica's part from its ring of readings and its live objects (see the module
    docstring); rates are zero until the ring holds two readings."""
    newest = ring.newest
    rate_base, quantile_base = ring.base(rate_window_s), ring.base(quantile_window_s)
    per_s = rates(newest, rate_base) if newest and rate_base else {}
    counts = bucket_deltas(newest, quantile_base) if newest and quantile_base else {}
    groups: dict[str, dict[str, Any]] = {}
    for group in catalog.groups:
        name = group.name
        groups[name] = {
            "requests": per_s.get(("requests", name), 0.0),
            "errors": per_s.get(("errors", name), 0.0),
            "cache_hits": per_s.get(("cache_hits", name), 0.0),
            "cache_lookups": per_s.get(("cache_lookups", name), 0.0),
            "tokens": per_s.get(("tokens", name), 0.0),
            "in_flight": in_flight.get(name, 0.0),
            "latency": counts.get(("latency", name), []),
            "ttft": counts.get(("ttft", name), []),
        }
    backends = [
        {
            "group": group.name,
            "name": b.name,
            "url": b.spec.url,
            "state": backend_state(b),
            "in_flight": b.in_flight,
            "kv_cache": engines[b.name].kv_cache_usage if b.name in engines else None,
            "prefix_queries": per_s.get(("prefix_queries", b.name), 0.0),
            "prefix_hits": per_s.get(("prefix_hits", b.name), 0.0),
            "tokens": per_s.get(("backend_tokens", b.name), 0.0),
        }
        for group in catalog.groups
        for b in group.backends
    ]
    queues = {
        name: {
            "scheduler": snap["scheduler"],
            "admitted": snap["admitted"],
            "capacity": snap["capacity"],
            "saturated": snap["saturated"],
            "queued": snap["queued"],
            "waiting": snap["waiting"],
        }
        for name, snap in (admissions.snapshot() if admissions is not None else {}).items()
    }
    spend = {
        whose: rate for (kind, whose), rate in per_s.items() if kind == "spend" and whose != "-"
    }
    return {"groups": groups, "backends": backends, "queues": queues, "spend": spend}
