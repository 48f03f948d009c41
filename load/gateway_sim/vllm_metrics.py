"""vLLM's Prometheus metrics, with vLLM's names, types and labels (``model_name``, ``engine``).

``legacy_names`` switches to the names of older vLLM versions (``gpu_cache_usage_perc``,
``gpu_prefix_cache_*``, ``time_per_output_token_seconds``) so clients can be tested on both.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway_sim.profiles import EngineProfile

LATENCY_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)


class VllmMetrics:
    """The metrics one simulated engine exposes at ``/metrics``."""

    def __init__(
        self, model_name: str, profile: EngineProfile, *, legacy_names: bool = False
    ) -> None:
        self.registry = r = CollectorRegistry()
        labels = ["model_name", "engine"]
        values = (model_name, "0")
        cache = "gpu_cache_usage_perc" if legacy_names else "kv_cache_usage_perc"
        prefix = "vllm:gpu_prefix_cache" if legacy_names else "vllm:prefix_cache"
        itl = "time_per_output_token_seconds" if legacy_names else "inter_token_latency_seconds"

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=r).labels(*values)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=r).labels(*values)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=r).labels(*values)

        self.running = gauge("vllm:num_requests_running", "Requests in the running batch.")
        self.waiting = gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled.")
        self.kv_cache_usage = gauge(f"vllm:{cache}", "KV-cache usage, 1 means 100 percent.")
        self.prefix_queries = counter(
            f"{prefix}_queries", "Prompt tokens queried in the prefix cache."
        )
        self.prefix_hits = counter(f"{prefix}_hits", "Prompt tokens found in the prefix cache.")
        self.prompt_tokens = counter("vllm:prompt_tokens", "Prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Generation tokens produced.")
        self.preemptions = counter("vllm:num_preemptions", "Cumulative preemptions.")
        self._success = Counter(
            "vllm:request_success",
            "Finished requests by finish reason.",
            [*labels, "finished_reason"],
            registry=r,
        )
        self._values = values
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds", "Time to first token.", LATENCY_BUCKETS
        )
        self.itl = histogram(f"vllm:{itl}", "Time between output tokens.", LATENCY_BUCKETS)
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds", "End-to-end latency.", LATENCY_BUCKETS
        )
        self.queue_time = histogram(
            "vllm:request_queue_time_seconds",
            "Time spent waiting before first scheduled.",
            LATENCY_BUCKETS,
        )
        self.request_prompt_tokens = histogram(
            "vllm:request_prompt_tokens", "Prompt tokens per request.", TOKEN_BUCKETS
        )
        self.request_generation_tokens = histogram(
            "vllm:request_generation_tokens", "Generation tokens per request.", TOKEN_BUCKETS
        )
        info = Gauge(
            "vllm:cache_config_info",
            "Information of the KV cache configuration.",
            ["block_size", "num_gpu_blocks", "enable_prefix_caching", "engine"],
            registry=r,
        )
        info.labels(
            str(profile.block_size), str(profile.num_gpu_blocks), str(profile.prefix_caching), "0"
        ).set(1)

    def finished(self, reason: str) -> None:
        """Count a finished request."""
        self._success.labels(*self._values, reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
