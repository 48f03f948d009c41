"""Scrape vLLM ``/metrics`` of the backends whose strategy asks for engine metrics.

Run by the app's lifespan; each backend at most every ``interval_s``. Old and new metric names
are both read. A failed scrape leaves the old reading, which then goes stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.routing.backends import Backend, ModelCatalog
from gateway.routing.base import EngineMetrics

log = logging.getLogger("gateway.scraper")
KV_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def parse_engine_metrics(text: str, now: float) -> EngineMetrics | None:
    """Waiting, running and KV-cache usage from a vLLM exposition (summed over engines)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("vllm:num_requests_waiting", "vllm:num_requests_running", *KV_NAMES):
            key = "kv" if family.name in KV_NAMES else family.name
            values = [s.value for s in family.samples]
            found[key] = (max(values) if key == "kv" else sum(values)) if values else 0.0
    if "vllm:num_requests_waiting" not in found:
        return None
    return EngineMetrics(
        found["vllm:num_requests_waiting"],
        found.get("vllm:num_requests_running", 0.0),
        found.get("kv", 0.0),
        now,
    )


async def scrape_once(http: aiohttp.ClientSession, backend: Backend, timeout_s: float) -> None:
    """Refresh ``backend.engine`` from its ``/metrics``."""
    try:
        async with http.get(
            f"{backend.spec.url}/metrics", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            if resp.status != 200:
                return
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return
    metrics = parse_engine_metrics(text, time.monotonic())
    if metrics is not None:
        backend.engine = metrics


def engine_targets(catalog: ModelCatalog) -> list[Backend]:
    """The backends of groups whose strategy routes on engine metrics (live)."""
    return [
        b
        for g in catalog.groups
        if getattr(g.strategy, "needs_engine_metrics", False)
        for b in g.backends
    ]


async def scrape_forever(
    http: aiohttp.ClientSession, catalog: ModelCatalog, interval_s: float = 0.5
) -> None:
    """Scrape those backends each ``interval_s`` until cancelled (following the live catalog)."""
    while True:
        started = time.monotonic()
        targets = engine_targets(catalog)
        await asyncio.gather(*(scrape_once(http, b, interval_s) for b in targets))
        with contextlib.suppress(ValueError):
            await asyncio.sleep(max(interval_s - (time.monotonic() - started), 0.05))
