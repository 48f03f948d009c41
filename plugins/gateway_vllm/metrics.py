"""vLLM's Prometheus exposition, read for the load it reports. Old and new metric names are both
read (``gpu_cache_usage_perc`` became ``kv_cache_usage_perc``, ``gpu_prefix_cache_*`` became
``prefix_cache_*``)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.routing.base import EngineMetrics

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
# counters: read by their samples' names (the text format's TYPE line may name them either way)
PREFIX_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
PREFIX_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")


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
        else:
            for sample in family.samples:
                if sample.name in PREFIX_QUERIES:
                    found["queries"] = found.get("queries", 0.0) + sample.value
                elif sample.name in PREFIX_HITS:
                    found["hits"] = found.get("hits", 0.0) + sample.value
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
