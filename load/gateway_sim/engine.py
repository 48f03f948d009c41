"""A continuous-batching engine: the scheduling and timing of one simulated vLLM replica.

Each step: admit waiting requests (first come, first served) while the running batch has room
(``max_num_seqs``), the step's prefill budget (``max_num_batched_tokens``) lasts and the KV cache
can hold their prompts (prefix-cache hits need no new blocks); then run the step, which costs the
profile's base time plus prefill for the admitted requests' uncached tokens plus decode for every
request already running. Admitted requests get their first token at the end of the step, running
ones their next. When a growing sequence finds the cache full, the most recently admitted request
is preempted back to the queue (recomputed later), as vLLM does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from gateway_sim.gates import Gate
from gateway_sim.kv_cache import Allocation, KVCache
from gateway_sim.profiles import EngineProfile
from gateway_sim.vllm_metrics import VllmMetrics


class PromptTooLongError(Exception):
    """The prompt (plus requested output) cannot fit the model or the KV cache."""


@dataclass(eq=False)
class SimRequest:
    """One sequence in the engine.

    Attributes:
        prompt_tokens: prompt length in tokens.
        hashes: chained hashes of the prompt's full blocks.
        output_tokens: tokens to generate.
        finish_reason: reported when it finishes (``stop``, ``length``, ``tool_calls``).
        generated: tokens produced so far; ``progress`` is signalled on every change.
        gate: the gate the request is subject to (:mod:`gateway_sim.gates`), if any: while it
            holds, the engine generates nothing more for the request.
    """

    prompt_tokens: int
    hashes: list[bytes]
    output_tokens: int
    finish_reason: str = "stop"
    arrival: float = field(default_factory=time.perf_counter)
    generated: int = 0
    cached_tokens: int = 0
    scheduled_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    done: bool = False
    allocation: Allocation | None = None
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    gate: Gate | None = None

    @property
    def held(self) -> bool:
        """Whether a gate holds the request now."""
        return self.gate is not None and self.gate.holds_at(self.generated)

    def emit(self) -> None:
        """Wake whoever waits for more tokens."""
        self.progress.set()


class Engine:
    """Schedules :class:`SimRequest` objects over simulated GPU steps."""

    def __init__(self, profile: EngineProfile, metrics: VllmMetrics) -> None:
        self.profile = profile
        self.metrics = metrics
        self.kv = KVCache(
            profile.num_gpu_blocks, profile.block_size, prefix_caching=profile.prefix_caching
        )
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self._wake = asyncio.Event()
        self.steps = 0

    def submit(self, request: SimRequest) -> None:
        """Queue a request.

        Raises:
            PromptTooLongError: it could never be scheduled.
        """
        p = self.profile
        if request.prompt_tokens + request.output_tokens > p.max_model_len:
            raise PromptTooLongError(
                f"This model's maximum context length is {p.max_model_len} tokens. However, you "
                f"requested {request.prompt_tokens + request.output_tokens} tokens "
                f"({request.prompt_tokens} in the messages, {request.output_tokens} in the "
                "completion)."
            )
        if -(-request.prompt_tokens // p.block_size) > p.num_gpu_blocks:
            raise PromptTooLongError(
                f"The prompt needs more than the {p.num_gpu_blocks} "
                "KV-cache blocks of this replica."
            )
        self.waiting.append(request)
        self.metrics.waiting.set(len(self.waiting))
        self._wake.set()

    def wake(self) -> None:
        """Look at the batch again (a gate opened)."""
        self._wake.set()

    @property
    def held(self) -> int:
        """Requests that a gate holds in the batch."""
        return sum(1 for r in self.running if r.held)

    def abort(self, request: SimRequest) -> None:
        """Drop a request (its client went away); frees its blocks."""
        if request.done:
            return
        request.done = True
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        if request.allocation is not None:
            self.kv.release(request.allocation)
            request.allocation = None
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.running.set(len(self.running))
        self.metrics.waiting.set(len(self.waiting))
        self.metrics.kv_cache_usage.set(self.kv.usage)

    def _admit(self) -> tuple[list[SimRequest], int]:
        """Move waiting requests into the batch; returns them and their uncached prompt tokens."""
        p = self.profile
        admitted: list[SimRequest] = []
        budget = 0
        while self.waiting and len(self.running) < p.max_num_seqs:
            request = self.waiting[0]
            uncached = request.prompt_tokens - self.kv.matched_tokens(request.hashes)
            if admitted and budget + uncached > p.max_num_batched_tokens:
                break
            allocation = self.kv.admit(request.prompt_tokens, request.hashes)
            if allocation is None:
                break
            self.waiting.popleft()
            request.allocation = allocation
            if request.scheduled_at is None:
                request.scheduled_at = time.perf_counter()
                request.cached_tokens = allocation.cached_tokens
                self.metrics.prefix_queries.inc(request.prompt_tokens)
                self.metrics.prefix_hits.inc(allocation.cached_tokens)
                self.metrics.prompt_tokens.inc(request.prompt_tokens)
                self.metrics.queue_time.observe(request.scheduled_at - request.arrival)
            # Only uncached tokens cost prefill time (a preempted request recomputes its own).
            budget += request.prompt_tokens - allocation.cached_tokens
            self.running.append(request)
            admitted.append(request)
        return admitted, budget

    def _preempt_for(self, request: SimRequest) -> bool:
        """Free blocks for ``request`` by preempting the newest other running request."""
        for victim in reversed(self.running):
            if victim is request:
                continue
            self.running.remove(victim)
            if victim.allocation is not None:
                self.kv.release(victim.allocation)
                victim.allocation = None
            self.waiting.appendleft(victim)
            self.metrics.preemptions.inc()
            return True
        return False

    def _advance(self, request: SimRequest, now: float) -> None:
        """Give ``request`` its next token, finishing it when it has them all."""
        allocation = request.allocation
        assert allocation is not None
        length = request.prompt_tokens + request.generated
        if length % self.profile.block_size == 0:
            while not self.kv.grow(allocation):
                if not self._preempt_for(request):
                    break
        if request.first_token_at is None:
            request.first_token_at = now
            self.metrics.ttft.observe(now - request.arrival)
        elif request.last_token_at is not None:
            self.metrics.itl.observe(now - request.last_token_at)
        request.last_token_at = now
        request.generated += 1
        self.metrics.generation_tokens.inc()
        if request.generated >= request.output_tokens:
            self._finish(request, now)
        request.emit()

    def _finish(self, request: SimRequest, now: float) -> None:
        request.done = True
        self.running.remove(request)
        if request.allocation is not None:
            self.kv.release(request.allocation)
            request.allocation = None
        m = self.metrics
        m.e2e.observe(now - request.arrival)
        m.request_prompt_tokens.observe(request.prompt_tokens)
        m.request_generation_tokens.observe(request.generated)
        m.finished(request.finish_reason)

    async def run(self) -> None:
        """Step forever (until cancelled); sleeps while there is nothing to do."""
        p = self.profile
        while True:
            if not self.waiting and all(r.held for r in self.running):
                self._update_gauges()
                self._wake.clear()
                await self._wake.wait()
            started = time.perf_counter()
            admitted, prefill_tokens = self._admit()
            decoding = [r for r in self.running if r not in admitted and not r.held]
            self._update_gauges()
            cost_ms = (
                p.step_base_ms
                + p.prefill_ms_per_token * prefill_tokens
                + p.decode_ms_per_seq * len(decoding)
            )
            # Sleep to the step's deadline, so the time spent here counts as part of the step.
            delay = started + cost_ms / 1000 - time.perf_counter()
            await asyncio.sleep(max(delay, 0.0))
            now = time.perf_counter()
            self.steps += 1
            for request in [*admitted, *decoding]:
                if request in self.running and not request.held:
                    self._advance(request, now)
