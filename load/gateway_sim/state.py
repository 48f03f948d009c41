"""A simulated replica's configuration, fault injection, counters and engine."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway_sim.engine import Engine
from gateway_sim.gates import Gate
from gateway_sim.profiles import DEFAULT_PROFILE, PROFILES, EngineProfile
from gateway_sim.vllm_metrics import VllmMetrics


class Faults(msgspec.Struct, forbid_unknown_fields=True):
    """Fault injection, changeable at run time through ``POST /sim/faults``.

    Attributes:
        error_rates: status code to the share of inference requests answered with it
            (``{"429": 0.1, "503": 0.05}``).
        delay_ms: latency added before every inference request is handled.
        spike_rate: share of requests that get ``spike_ms`` of extra latency.
        spike_ms: the size of a latency spike.
        stall_rate: share of streams that stall for ``stall_ms`` halfway through.
        stall_ms: the length of a stall.
        drop_stream_after: abort streams after this many chunks (0: never).
        drop_rate: share of streams dropped halfway through.
        health_status: what ``/health`` answers (200, or 503 to look dead).
        down: answer every inference request with 503 and abort running streams, like a dead
            engine behind a live HTTP server; ``/health`` answers 503 too.
        retry_after_s: ``Retry-After`` sent with injected 429s.
    """

    error_rates: dict[int, float] = msgspec.field(default_factory=dict)
    delay_ms: float = 0.0
    spike_rate: float = 0.0
    spike_ms: float = 0.0
    stall_rate: float = 0.0
    stall_ms: float = 0.0
    drop_stream_after: int = 0
    drop_rate: float = 0.0
    health_status: int = 200
    down: bool = False
    retry_after_s: int = 1


@dataclass
class SimConfig:
    """A simulated server.

    Attributes:
        models: served model names; the first labels the metrics.
        profile: the engine's capacity and speed.
        embedding_dim: length of embedding vectors.
        faults: initial fault injection.
        legacy_metric_names: expose older vLLM metric names.
        seed: seed of the fault-injection dice.
    """

    models: list[str] = field(default_factory=lambda: ["sim-model"])
    profile: EngineProfile = field(default_factory=lambda: PROFILES[DEFAULT_PROFILE])
    embedding_dim: int = 256
    faults: Faults = field(default_factory=Faults)
    legacy_metric_names: bool = False
    seed: int | None = None


@dataclass
class SimStats:
    """What the simulator saw; served as JSON at ``/sim/stats``."""

    requests: dict[str, int] = field(default_factory=dict)
    completed: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    injected_errors: int = 0
    prefix_cache_resets: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=64))


class SimState:
    """Everything one simulated replica holds."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = VllmMetrics(
            config.models[0], config.profile, legacy_names=config.legacy_metric_names
        )
        self.engine = Engine(config.profile, self.metrics)
        self.stats = SimStats()
        self.dice = random.Random(config.seed)
        # Embedding calls are served one at a time: each costs a fixed call time plus a little
        # per input, so batching inputs into fewer calls pays off, as on a real GPU.
        self.embed_lock = asyncio.Lock()
        self.running_streams: set[asyncio.Task[Any]] = set()
        self.gates: dict[str, Gate] = {}

    GATE_HEADER = "x-sim-gate"

    def gate(self, name: str) -> Gate:
        """The gate called ``name`` (created open on first use)."""
        gate = self.gates.get(name)
        if gate is None:
            gate = self.gates[name] = Gate(name, self.engine.wake)
        return gate

    def gate_for(self, headers: Mapping[str, str]) -> Gate | None:
        """The closed gate a request is subject to: the one its ``x-sim-gate`` header names,
        else the first closed with ``all``; None when none holds it."""
        named = headers.get(self.GATE_HEADER)
        if named is not None:
            gate = self.gates.get(named)
            return gate if gate is not None and gate.closed else None
        return next((g for g in self.gates.values() if g.closed and g.all), None)

    @property
    def held(self) -> int:
        """Requests waiting at gates, before being handled or in the batch."""
        return sum(g.waiting for g in self.gates.values()) + self.engine.held

    def held_at(self, gate: Gate) -> int:
        """Requests waiting at ``gate``."""
        return gate.waiting + sum(1 for r in self.engine.running if r.gate is gate and r.held)

    def release_gates(self) -> None:
        """Open every gate (on shutdown, so that no request is left waiting)."""
        for gate in self.gates.values():
            gate.release()

    @property
    def running(self) -> int:
        return len(self.engine.running) + len(self.engine.waiting)

    def roll(self, rate: float) -> bool:
        """True with probability ``rate``."""
        return rate > 0 and self.dice.random() < rate

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "requests": dict(s.requests),
            "completed": s.completed,
            "cancelled": s.cancelled,
            "running": self.running,
            "prompt_tokens": s.prompt_tokens,
            "generation_tokens": s.generation_tokens,
            "injected_errors": s.injected_errors,
            "held": self.held,
            "prefix_cache_resets": s.prefix_cache_resets,
            "kv_cache_usage": self.engine.kv.usage,
            "steps": self.engine.steps,
            "recent": list(s.recent),
        }

    def reset_stats(self) -> None:
        self.stats = SimStats()
