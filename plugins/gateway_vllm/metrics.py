"""vLLM's Prometheus exposition, read for the load it reports. Old and new metric names are both
read (``gpu_cache_usage_perc`` became ``kv_cache_usage_perc``)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.routing.base import EngineMetrics

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def parse_engine_metrics(text: str, now: float) -> EngineMetrics | None:
    """Waiting, running (summed over engines) and KV-cache usage (the highest) from a vLLM
    exposition; None when it reports no queue (not a vLLM server)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in (WAITING, RUNNING, *KV_NAMES):
            key = "kv" if family.name in KV_NAMES else family.name
            values = [s.value for s in family.samples]
            found[key] = (max(values) if key == "kv" else sum(values)) if values else 0.0
    if WAITING not in found:
        return None
    return EngineMetrics(found[WAITING], found.get(RUNNING, 0.0), found.get("kv", 0.0), now)
