"""Routing strategies on synthetic backend snapshots: pure, no event loop."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from gateway_balancers.strategies import (
    CostStrategy,
    LeastInflightStrategy,
    PowerOfTwoEwmaStrategy,
    PriorityStrategy,
    SessionStrategy,
    WeightedStrategy,
)
from gateway_cache_aware.strategy import CacheAwareStrategy
from gateway_vllm_load.strategy import VllmLoadStrategy

from gateway.routing.base import EngineMetrics, RouteRequest, split_choice
from gateway.routing.health import BackendHealth, BreakerSettings, BreakerState
from gateway.routing.retry import RetryBudget, backoff_s
from gateway.schemas.openai import ChatCompletionRequest, ChatMessage


@dataclass
class Snap:
    name: str
    weight: float = 1.0
    in_flight: int = 0
    available: bool = True
    latency_s: float | None = None
    ttft_s: float | None = None
    error_rate: float = 0.0
    breaker: str = "closed"
    engine: EngineMetrics | None = None
    input_price: float = 0.0
    output_price: float = 0.0
    context_window: int = 0


def request(text: str = "hi", headers: dict[str, str] | None = None, **fields: Any) -> RouteRequest:
    payload = ChatCompletionRequest(model="m", messages=[ChatMessage("user", text)], **fields)
    return RouteRequest("m", "chat/completions", payload, headers or {})


def picks(strategy: Any, backends: list[Snap], n: int = 1000, **kw: Any) -> Counter[str]:
    return Counter(
        backends[split_choice(strategy.choose(request(**kw), backends))[0]].name for _ in range(n)
    )


def test_weighted_follows_weights() -> None:
    backends = [Snap("a", weight=1), Snap("b", weight=3)]
    counts = picks(WeightedStrategy(seed=1), backends, 4000)
    assert 0.7 < counts["b"] / 4000 < 0.8


def test_least_inflight_and_random_tie_break() -> None:
    assert picks(
        LeastInflightStrategy(),
        [Snap("a", in_flight=3), Snap("b", in_flight=1), Snap("c", in_flight=2)],
        50,
    ) == {"b": 50}
    counts = picks(LeastInflightStrategy(seed=2), [Snap("a"), Snap("b")], 1000)
    assert min(counts.values()) > 400


def test_p2c_avoids_the_slow_and_the_busy() -> None:
    backends = [
        Snap("fast", latency_s=0.1),
        Snap("slow", latency_s=0.3),
        Snap("mid", latency_s=0.1, in_flight=5),
    ]
    counts = picks(PowerOfTwoEwmaStrategy(seed=3), backends, 3000)
    assert counts["fast"] > counts["slow"] > 0 or counts["slow"] == 0
    assert counts["fast"] > 1500
    assert counts["mid"] < counts["fast"] / 3


def test_session_sticks_spreads_keys_and_bounds_load() -> None:
    strategy = SessionStrategy()
    backends = [Snap("a"), Snap("b"), Snap("c")]
    owners = {
        key: picks(strategy, backends, 5, headers={"x-session-id": key})
        for key in ("s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8")
    }
    assert all(len(c) == 1 for c in owners.values())  # each session sticks
    assert len({next(iter(c)) for c in owners.values()}) > 1  # sessions spread
    home = next(iter(owners["s1"]))
    loaded = [Snap(b.name, in_flight=20 if b.name == home else 0) for b in backends]
    moved = picks(strategy, loaded, 1, headers={"x-session-id": "s1"})
    assert home not in moved  # bounded load: the overloaded home spills the session
    assert picks(strategy, backends, 3, user="u-9").most_common(1)[0][1] == 3


def test_cost_picks_cheapest_that_fits() -> None:
    backends = [
        Snap("cloud", input_price=3, output_price=15, context_window=200_000),
        Snap("gpu", input_price=0.1, output_price=0.2, context_window=1_000),
    ]
    assert picks(CostStrategy(), backends, 3) == {"gpu": 3}
    long_prompt = "x" * 20_000
    assert picks(CostStrategy(), backends, 3, text=long_prompt) == {"cloud": 3}


def test_priority_fails_over_in_order() -> None:
    strategy = PriorityStrategy(order=["primary", "secondary"])
    assert picks(strategy, [Snap("secondary"), Snap("primary"), Snap("other")], 3) == {"primary": 3}
    assert picks(strategy, [Snap("other"), Snap("secondary")], 3) == {"secondary": 3}


def test_cache_aware_affinity_miss_and_imbalance() -> None:
    strategy = CacheAwareStrategy(balance_abs_threshold=4, balance_rel_threshold=1.5)
    backends = [Snap("a"), Snap("b"), Snap("c")]
    prefixes = [f"system prompt number {g} " * 30 for g in range(3)]
    first = {
        g: split_choice(strategy.choose(request(p + "q0"), backends))
        for g, p in enumerate(prefixes)
    }
    assert {r for _, r in first.values()} == {"miss"}
    assert len({i for i, _ in first.values()}) == 3  # new prefixes spread over the replicas
    for g, p in enumerate(prefixes):
        index, reason = split_choice(strategy.choose(request(p + "another question"), backends))
        assert (index, reason) == (first[g][0], "affinity")
    home = first[0][0]
    busy = [Snap(b.name, in_flight=10 if i == home else 1) for i, b in enumerate(backends)]
    index, reason = split_choice(strategy.choose(request(prefixes[0] + "third"), busy))
    assert reason == "imbalance"
    assert index != home


def test_cache_aware_partitions_by_salt_and_evicts() -> None:
    strategy = CacheAwareStrategy(max_chars=64 * 40)
    backends = [Snap("a"), Snap("b")]
    text = "shared instructions " * 40
    _i, _ = split_choice(strategy.choose(request(text, cache_salt="t1"), backends))
    _, reason = split_choice(strategy.choose(request(text, cache_salt="t2"), backends))
    assert reason == "miss"
    for n in range(30):  # fill past the cap with other prefixes
        strategy.choose(request(f"filler {n} " * 40), backends)
    assert len(strategy.index) <= 40


def engine(waiting: float, running: float, kv: float, age: float = 0.0) -> EngineMetrics:
    return EngineMetrics(waiting, running, kv, time.monotonic() - age)


def test_vllm_load_modes_and_staleness() -> None:
    backends = [
        Snap("a", engine=engine(5, 100, 0.9)),
        Snap("b", engine=engine(0, 50, 0.4)),
        Snap("c", engine=engine(0, 10, 0.1)),
    ]
    assert picks(VllmLoadStrategy(), backends, 3) == {"c": 3}
    assert picks(VllmLoadStrategy(mode="best_fit"), backends, 3) == {"b": 3}
    stale = [
        Snap("a", in_flight=1, engine=engine(0, 0, 0, age=5)),
        Snap("b", in_flight=0, engine=None),
    ]
    index, reason = split_choice(VllmLoadStrategy().choose(request(), stale))
    assert (index, reason) == (1, "stale_metrics")
    with pytest.raises(ValueError, match="mode"):
        VllmLoadStrategy(mode="fastest")


def test_breaker_trips_half_opens_and_closes() -> None:
    health = BackendHealth(BreakerSettings(consecutive_failures=3, cooldown_s=10))
    for _ in range(3):
        health.on_failure(now=100.0)
    assert health.current_state(now=100.0) is BreakerState.OPEN
    assert not health.admits(now=105.0)
    assert health.admits(now=110.5)  # half-open: one probe
    health.on_attempt()
    assert not health.admits(now=110.6)
    health.on_success(latency_s=0.2)
    assert health.current_state() is BreakerState.CLOSED
    rate = BackendHealth(
        BreakerSettings(consecutive_failures=100, failure_rate=0.5, min_requests=10)
    )
    for i in range(10):
        (rate.on_failure if i % 2 else rate.on_success)()  # the 10th is a failure
    assert rate.current_state() is BreakerState.OPEN


def test_retry_budget_and_backoff() -> None:
    budget = RetryBudget(ratio=0.1, minimum=2)
    assert budget.withdraw()
    assert budget.withdraw()
    assert not budget.withdraw()
    for _ in range(30):
        budget.deposit()
    assert budget.withdraw()
    assert all(0 <= backoff_s(r, 25, 1000) <= min(1.0, 0.025 * 2 ** (r - 1)) for r in range(1, 8))
