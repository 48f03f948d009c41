"""The routing-strategy contract.

A strategy is registered through ``register_routing_strategies`` as a factory called with the model
group's ``routing.params`` as keyword arguments; it returns one :class:`RoutingStrategy` per model
group. ``choose`` is called on every request, synchronously, with a read-only view of the group's
backends: keep it pure (no I/O), so it is cheap and unit-testable without an event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable


@dataclass(frozen=True, slots=True)
class EngineMetrics:
    """A backend's engine load, as its provider reports it (``EngineMetricsSource``).

    Attributes:
        waiting: requests queued in the engine.
        running: requests in the running batch.
        kv_cache_usage: share of KV-cache blocks in use, 0 to 1.
        scraped_at: ``time.monotonic()`` of the scrape.
        prefix_cache_queries / prefix_cache_hits: prompt tokens looked up in the engine's
            prefix cache and found there, since the engine started (counters; the dashboard
            shows their rates' ratio).
    """

    waiting: float
    running: float
    kv_cache_usage: float
    scraped_at: float
    prefix_cache_queries: float = 0.0
    prefix_cache_hits: float = 0.0

    def fresh(self, now: float, max_age_s: float = 2.0) -> bool:
        """Whether the reading is recent enough to route on."""
        return now - self.scraped_at <= max_age_s


class BackendView(Protocol):
    """What a strategy may read about a backend (a live, read-only view).

    Attributes:
        name: unique backend name.
        weight: configured relative share.
        in_flight: requests this gateway process has outstanding on it now.
        available: routable now (healthy, breaker not open, not draining).
        latency_s: peak-EWMA latency of its recent answers (None before the first).
        ttft_s: peak-EWMA time to first token of its recent streams (None before the first).
        error_rate: share of failures among its recent outcomes.
        breaker: ``closed``, ``open`` or ``half_open``.
        engine: its engine metrics, when the group's strategy :class:`UsesEngineMetrics`.
        input_price / output_price: US dollars per million tokens.
        context_window: longest prompt plus output in tokens (0: unknown).
    """

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def available(self) -> bool: ...

    @property
    def latency_s(self) -> float | None: ...

    @property
    def ttft_s(self) -> float | None: ...

    @property
    def error_rate(self) -> float: ...

    @property
    def breaker(self) -> str: ...

    @property
    def engine(self) -> EngineMetrics | None: ...

    @property
    def input_price(self) -> float: ...

    @property
    def output_price(self) -> float: ...

    @property
    def context_window(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a strategy may read about the request being routed.

    Attributes:
        model: the public model name the client asked for.
        endpoint: the OpenAI endpoint path (``chat/completions``...).
        payload: the validated request Struct.
        headers: the client's request headers (lower-case names).
    """

    model: str
    endpoint: str
    payload: Any
    headers: Mapping[str, str]


Choice = int | tuple[int, str]


def split_choice(choice: Choice) -> tuple[int, str]:
    """``(index, reason)`` from what ``choose`` returned (reason ``chosen`` when absent)."""
    if isinstance(choice, tuple):
        return choice
    return choice, "chosen"


@runtime_checkable
class RoutingStrategy(Protocol):
    """Picks the backend for one request."""

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> Choice:
        """Return the index in ``backends`` of the backend to use, or ``(index, reason)``.

        ``backends`` is never empty and holds only available backends. When a call fails and
        is retried, ``choose`` is called again without the backends already tried. The reason
        (``affinity``, ``imbalance``, ``least_loaded``...) is counted in the gateway's metrics.
        """
        ...


@runtime_checkable
class UsesEngineMetrics(Protocol):
    """Capability of a strategy: it routes on engine load.

    When ``needs_engine_metrics`` is true, the gateway asks each of the group's backends whose
    provider is an ``EngineMetricsSource`` (``gateway.providers.base``) for its load every 500 ms
    and keeps the reading in the backend's ``engine``.

    Attributes:
        needs_engine_metrics: whether to collect engine metrics for the strategy's group.
    """

    needs_engine_metrics: bool


RoutingStrategyFactory: TypeAlias = Callable[..., RoutingStrategy]
"""What ``register_routing_strategies`` registers (a strategy class, typically).

Called with the group's ``routing.params`` as keyword arguments; raises ``TypeError`` or
``ValueError`` for bad parameters, and the gateway names the config field.
"""
