"""What the dashboard reads besides the metrics, each time it updates (only while a page is
open, or while a fleet shares its numbers): engines' readings, budgets, alerts, GPU nodes.

Every read is bounded in time and never raises: a node agent or an engine that does not answer
leaves its row out (or at its last reading), with a debug log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from gateway.governance.keystore import KeyStore
from gateway.governance.limiter import Limiter, Rule
from gateway.governance.records import Budget
from gateway.providers.base import EngineMetricsSource
from gateway.routing.backends import ModelCatalog
from gateway.routing.base import EngineMetrics

log = logging.getLogger("gateway.dashboard")

MAX_BUDGET_HOLDERS = 100
"""Tenants and keys whose budgets are read per update at most (the first, by name)."""


async def read_engines(
    catalog: ModelCatalog, kept: dict[str, EngineMetrics], timeout_s: float, *, read_now: bool
) -> dict[str, EngineMetrics]:
    """Each backend's engine reading by name: the scraper's when fresh, else (``read_now``)
    one read now from providers that report them (into ``kept``, whose stale entries are the
    fallback)."""
    now = time.monotonic()
    found: dict[str, EngineMetrics] = {}
    wanted: list[tuple[str, EngineMetricsSource]] = []
    for group in catalog.groups:
        for backend in group.backends:
            engine = backend.engine
            if engine is not None and engine.fresh(now):
                found[backend.name] = engine
            elif read_now and isinstance(backend.provider, EngineMetricsSource):
                wanted.append((backend.name, backend.provider))

    async def read(name: str, source: EngineMetricsSource) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                reading = await source.engine_metrics()
        except Exception as exc:  # noqa: BLE001 - a plugin's failure leaves the old reading
            log.debug("engine metrics of %s failed: %s: %s", name, type(exc).__name__, exc)
            return
        if reading is not None:
            kept[name] = reading

    await asyncio.gather(*(read(n, s) for n, s in wanted))
    names = {b.name for g in catalog.groups for b in g.backends}
    for name in [n for n in kept if n not in names]:
        del kept[name]  # a backend removed since
    return {**{n: kept[n] for n, _ in wanted if n in kept}, **found}


def _budget_rules(scope: str, budgets: Iterable[Budget]) -> list[Rule]:
    return [Rule(scope, "budget", b.nanos, b.window, tuple(b.alert_thresholds)) for b in budgets]


BudgetRules = dict[str, list[tuple[str | None, str | None, Rule]]]
"""Budget rules by limiter hash tag, each with its tenant and key id (None: tenant-wide)."""


async def list_budgets(store: KeyStore | None) -> BudgetRules:
    """Every tenant-wide and key-wide budget of the key store (live keys only; empty without
    a store), at most :data:`MAX_BUDGET_HOLDERS` tags."""
    if store is None:
        return {}
    tenants = sorted(await store.list_tenants(), key=lambda t: t.name)
    keys = sorted(await store.list_keys(), key=lambda k: k.id)
    by_tag: BudgetRules = {}
    for record in tenants[:MAX_BUDGET_HOLDERS]:
        for rule in _budget_rules(f"tenant:{record.name}", record.budgets):
            by_tag.setdefault(f"t:{record.name}", []).append((record.name, None, rule))
    for key in [k for k in keys if k.revoked_at is None and k.budgets]:
        tag = f"t:{key.tenant}" if key.tenant else f"k:{key.id}"
        for rule in _budget_rules(f"key:{key.id}", key.budgets):
            by_tag.setdefault(tag, []).append((key.tenant, key.id, rule))
    return dict(list(by_tag.items())[:MAX_BUDGET_HOLDERS])


async def read_budgets(rules: BudgetRules, limiter: Limiter) -> list[dict[str, Any]]:
    """Each budget of ``rules`` with its window's spend, as the limiter counts it (shared by
    the fleet when the limiter is)."""
    out: list[dict[str, Any]] = []
    for tag, entries in rules.items():
        states = await limiter.states([rule for _, _, rule in entries], tag)
        for (tenant, key_id, _), state in zip(entries, states, strict=True):
            rule = state.rule
            out.append(
                {
                    "scope": rule.scope,
                    "tenant": tenant,
                    "key_id": key_id,
                    "window": rule.window,
                    "limit_usd": rule.limit / 1e9,
                    "spent_usd": state.used / 1e9,
                    "remaining_usd": state.remaining / 1e9,
                }
            )
    return out


def recent_alerts(alerts: Iterable[Mapping[str, Any]], since: float) -> list[dict[str, Any]]:
    """The budget alerts fired at or after ``since`` (Unix time), newest first."""
    return sorted((dict(a) for a in alerts if a["at"] >= since), key=lambda a: -a["at"])


def _gpu(reading: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "index": reading.get("index"),
        "name": reading.get("name"),
        "utilization_pct": reading.get("utilization_pct"),
        "memory_used_mib": reading.get("memory_used_mib"),
        "memory_total_mib": reading.get("memory_total_mib"),
        "temperature_c": reading.get("temperature_c"),
        "power_w": reading.get("power_w"),
        "power_limit_w": reading.get("power_limit_w"),
    }


async def read_nodes(
    http: aiohttp.ClientSession, urls: Iterable[str], timeout_s: float
) -> list[dict[str, Any]]:
    """Each node agent's GPUs and cost per hour from its ``/status``; an agent that does not
    answer is listed ``reachable: false``."""

    async def read(url: str) -> dict[str, Any]:
        try:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with http.get(f"{url.rstrip('/')}/status", timeout=timeout) as response:
                response.raise_for_status()
                status = await response.json(content_type=None)
            return {
                "url": url,
                "node": str(status["node"]),
                "reachable": True,
                "gpus": [_gpu(g) for g in status.get("gpus", [])],
                "gpu_error": status.get("gpu_error"),
                "engines": len(status.get("engines", [])),
                "usd_per_hour": (status.get("cost") or {}).get("usd_per_hour"),
            }
        except Exception as exc:  # noqa: BLE001 - an agent that is down is shown as such
            log.debug("node agent %s not read: %s: %s", url, type(exc).__name__, exc)
            return {"url": url, "node": url, "reachable": False, "gpus": [], "engines": 0}

    return list(await asyncio.gather(*(read(u) for u in urls)))
