"""``vllm_load``: route on each replica's own engine metrics (waiting, running, KV-cache use).

The gateway scrapes the group's vLLM ``/metrics`` at most every 500 ms while this strategy is in
use (``needs_engine_metrics``). Readings older than ``stale_after_s`` are not trusted: the
strategy then falls back to the gateway's in-flight counts.

Modes:
- ``least_utilized``: lowest score = ``queue_weight`` x waiting + running / ``max_num_seqs`` +
  ``kv_weight`` x KV-cache usage, plus this gateway's in-flight requests sent since the scrape.
- ``best_fit``: pack by KV-cache pressure: the fullest replica still under ``kv_high_water`` with
  no queue, so others stay free for long prompts; when none qualifies, least utilized.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.routing.base import BackendView, Choice, RouteRequest


class VllmLoadStrategy:
    """Least-utilized or best-fit placement from vLLM engine metrics."""

    needs_engine_metrics = True

    def __init__(
        self,
        mode: str = "least_utilized",
        queue_weight: float = 2.0,
        kv_weight: float = 2.0,
        max_num_seqs: int = 256,
        kv_high_water: float = 0.85,
        stale_after_s: float = 2.0,
    ) -> None:
        if mode not in ("least_utilized", "best_fit"):
            raise ValueError("`mode` must be `least_utilized` or `best_fit`")
        self.mode = mode
        self.queue_weight = queue_weight
        self.kv_weight = kv_weight
        self.max_num_seqs = max_num_seqs
        self.kv_high_water = kv_high_water
        self.stale_after_s = stale_after_s

    def score(self, backend: BackendView) -> float:
        e = backend.engine
        assert e is not None
        return (
            self.queue_weight * e.waiting
            + e.running / self.max_num_seqs
            + self.kv_weight * e.kv_cache_usage
            + backend.in_flight / self.max_num_seqs
        )

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> Choice:
        now = time.monotonic()
        if not all(
            b.engine is not None and b.engine.fresh(now, self.stale_after_s) for b in backends
        ):
            least = min(range(len(backends)), key=lambda i: (backends[i].in_flight, i))
            return least, "stale_metrics"
        if self.mode == "best_fit":
            fits = [
                i
                for i, b in enumerate(backends)
                if b.engine is not None
                and b.engine.waiting == 0
                and b.engine.kv_cache_usage < self.kv_high_water
            ]
            if fits:
                best = max(
                    fits,
                    key=lambda i: (
                        backends[i].engine.kv_cache_usage,  # type: ignore[union-attr]
                        -i,
                    ),
                )
                return best, "best_fit"
        return min(
            range(len(backends)), key=lambda i: (self.score(backends[i]), i)
        ), "least_utilized"
