"""From replicas' parts to what the page shows.

:func:`merge_parts` adds up the parts of several replicas (rates, bucket counts, in-flight
counts and queue depths add; a backend shows the worst state any replica sees; budgets, which
the limiter counts for the whole fleet, and alerts are deduplicated). :func:`render` turns one
(merged) part into the page's numbers: percentiles from the bucket counts, ratios from rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.dashboard.window import add_counts, quantile

MAX_ALERTS = 20

_STATE_ORDER = ("up", "draining", "half-open", "breaker open", "down")
"""Backend states from best to worst."""

_SUMMED = ("requests", "errors", "cache_hits", "cache_lookups", "tokens", "in_flight")


def _worse(a: str, b: str) -> str:
    return a if _STATE_ORDER.index(a) >= _STATE_ORDER.index(b) else b


def merge_parts(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One part adding up ``parts`` (see the module docstring)."""
    groups: dict[str, dict[str, Any]] = {}
    backends: dict[tuple[str, str], dict[str, Any]] = {}
    queues: dict[str, dict[str, Any]] = {}
    spend: dict[str, float] = {}
    budgets: dict[tuple[str, str], dict[str, Any]] = {}
    alerts: dict[tuple[str, str, float], dict[str, Any]] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, g in part["groups"].items():
            into = groups.setdefault(name, {k: 0.0 for k in _SUMMED} | {"latency": [], "ttft": []})
            for k in _SUMMED:
                into[k] += g[k]
            for k in ("latency", "ttft"):
                if g[k]:
                    into[k] = add_counts(into[k], g[k])
        for b in part["backends"]:
            found = backends.get((b["group"], b["name"]))
            if found is None:
                backends[b["group"], b["name"]] = dict(b)
                continue
            found["state"] = _worse(found["state"], b["state"])
            for k in ("in_flight", "prefix_queries", "prefix_hits", "tokens"):
                found[k] += b[k]
            if b["kv_cache"] is not None:
                found["kv_cache"] = max(found["kv_cache"] or 0.0, b["kv_cache"])
        for name, q in part["queues"].items():
            into = queues.setdefault(name, {**q, "admitted": 0, "queued": 0, "waiting": {}})
            into["admitted"] += q["admitted"]
            into["queued"] += q["queued"]
            into["saturated"] = into["saturated"] or q["saturated"]
            for band, n in q["waiting"].items():
                into["waiting"][band] = into["waiting"].get(band, 0) + n
        for tenant, rate in part["spend"].items():
            spend[tenant] = spend.get(tenant, 0.0) + rate
        for b in part["budgets"]:
            # one limiter for the fleet: the replica that read it last saw the most spend
            seen = budgets.get((b["scope"], b["window"]))
            if seen is None or b["spent_usd"] > seen["spent_usd"]:
                budgets[b["scope"], b["window"]] = b
        for a in part["alerts"]:
            alerts.setdefault((a["scope"], a["window"], a["threshold"]), a)
        for n in part["nodes"]:
            if n["reachable"] or n["node"] not in nodes:
                nodes[n["node"]] = n
    return {
        "groups": groups,
        "backends": list(backends.values()),
        "queues": queues,
        "spend": spend,
        "budgets": list(budgets.values()),
        "alerts": sorted(alerts.values(), key=lambda a: -a["at"])[:MAX_ALERTS],
        "nodes": list(nodes.values()),
    }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _quantiles(bounds: Sequence[float], counts: Sequence[float]) -> tuple[Any, Any]:
    if len(counts) != len(bounds):
        return None, None
    return quantile(0.5, bounds, counts), quantile(0.99, bounds, counts)


def render(
    part: Mapping[str, Any],
    bounds: Sequence[float],
    *,
    replicas: int,
    shared: bool,
) -> dict[str, Any]:
    """The page's numbers from ``part``.

    Args:
        bounds: the histograms' upper bounds, ``math.inf`` last.
        replicas: how many replicas' parts ``part`` adds up.
        shared: whether the parts came through the shared store (fleet numbers).
    """
    if bounds and not math.isinf(bounds[-1]):
        raise ValueError("the last bucket bound must be +Inf")
    groups = []
    for name, g in sorted(part["groups"].items()):
        p50, p99 = _quantiles(bounds, g["latency"])
        t50, t99 = _quantiles(bounds, g["ttft"])
        groups.append(
            {
                "name": name,
                "rps": g["requests"],
                "error_rate": _ratio(g["errors"], g["requests"]),
                "cache_hit_rate": _ratio(g["cache_hits"], g["cache_lookups"]),
                "tokens_s": g["tokens"],
                "in_flight": g["in_flight"],
                "p50_s": p50,
                "p99_s": p99,
                "ttft_p50_s": t50,
                "ttft_p99_s": t99,
            }
        )
    backends = [
        {
            **{k: b[k] for k in ("group", "name", "url", "state", "in_flight", "kv_cache")},
            "prefix_hit_rate": _ratio(b["prefix_hits"], b["prefix_queries"]),
            "tokens_s": b["tokens"],
        }
        for b in part["backends"]
    ]
    queues = [{"group": name, **q} for name, q in sorted(part["queues"].items())]
    tenants: dict[str, dict[str, Any]] = {}
    for name, rate in part["spend"].items():
        tenants.setdefault(name, {"tenant": name, "budgets": []})["spend_per_min"] = rate * 60
    for b in sorted(part["budgets"], key=lambda b: (b["scope"], b["window"])):
        whose = b["tenant"] or b["scope"]
        row = tenants.setdefault(whose, {"tenant": whose, "budgets": []})
        row["budgets"].append(
            {
                **{k: b[k] for k in ("scope", "window", "limit_usd", "spent_usd")},
                "remaining_usd": b["remaining_usd"],
                "used": _ratio(b["spent_usd"], b["limit_usd"]),
            }
        )
    for row in tenants.values():
        row.setdefault("spend_per_min", 0.0)
    return {
        "fleet": {"replicas": replicas, "shared": shared},
        "groups": groups,
        "backends": backends,
        "queues": queues,
        "tenants": sorted(tenants.values(), key=lambda t: t["tenant"]),
        "alerts": list(part["alerts"]),
        "nodes": sorted(part["nodes"], key=lambda n: n["node"]),
    }


def only_tenant(view: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """``view`` as a tenant admin sees it: that tenant's spend, budgets and alerts only, and
    no backend's or node's URL (one may carry credentials in its userinfo or query)."""
    return {
        **view,
        "tenants": [t for t in view["tenants"] if t["tenant"] == tenant],
        "alerts": [a for a in view["alerts"] if a.get("tenant") == tenant],
        "backends": [{k: v for k, v in b.items() if k != "url"} for b in view["backends"]],
        "nodes": [{k: v for k, v in n.items() if k != "url"} for n in view["nodes"]],
    }
