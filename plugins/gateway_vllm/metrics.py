"""vLLM's Prometheus exposition, read for the load it reports. Old and new metric names are both
read (``gpu_cache_usage_perc`` became ``kv_cache_usage_perc``, ``gpu_prefix_cache_*`` became
``prefix_cache_*``)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.routing.base import EngineMetrics

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
PREFIX_QUERIES = ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")
PREFIX_HITS = ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits")


def parse_engine_metrics(text: str, now: float) -> EngineMetrics | None:
    """Waiting, running (summed over engines), KV-cache usage (the highest) and the prefix
    cache's queried and hit tokens (summed) from a vLLM exposition; None when it reports no
    queue (not a vLLM server)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        name = family.name
        if name in (WAITING, RUNNING, *KV_NAMES):
            key = "kv" if name in KV_NAMES else name
            values = [s.value for s in family.samples]
            found[key] = (max(values) if key == "kv" else sum(values)) if values else 0.0
        elif name in (*PREFIX_QUERIES, *PREFIX_HITS):
            key = "queries" if name in PREFIX_QUERIES else "hits"
            # a counter's family also holds its `_created` timestamps
            found[key] = sum(s.value for s in family.samples if s.name.endswith("_total"))
    if WAITING not in found:
        return None
    return EngineMetrics(
        found[WAITING],
        found.get(RUNNING, 0.0),
        found.get("kv", 0.0),
        now,
        prefix_cache_queries=found.get("queries", 0.0),
        prefix_cache_hits=found.get("hits", 0.0),
    )
