"""One replica's numbers from a real app state: its Prometheus registry and live backends."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import build_state
from gateway.config_loader import settings_from_mapping
from gateway.dashboard.feed import BOUNDS
from gateway.dashboard.snapshot import backend_state, read_sample, replica_part
from gateway.dashboard.view import merge_parts, only_tenant, render
from gateway.dashboard.window import Ring
from gateway.routing.base import EngineMetrics
from gateway.state import GatewayState
from gateway.testing import plugin_manager


def make_state(tmp_path: Any) -> GatewayState:
    backends = [{"provider": "fake", "name": "a"}, {"provider": "fake", "name": "b"}]
    config = {
        "models": [{"name": "chat", "backends": backends}],
        "governance": {"data_dir": str(tmp_path)},
    }
    return build_state(settings_from_mapping(config, "test"), plugin_manager())


def record_traffic(state: GatewayState, requests: int) -> None:
    m = state.metrics
    for i in range(requests):
        status = 502 if i % 4 == 0 else 200  # a quarter fail
        m.record_request("chat", "a", "chat", status, 0.2)
        m.child(m.ttft_seconds, "chat", "a").observe(0.05)
        m.child(m.cache_requests, "chat", "hit" if i % 2 else "miss", "memory").inc()
        m.exchange("chat", "a", "chat").tokens(10, 5)
    state.governance.governor.metrics.spent("acme", "chat", None, 30_000_000 * requests)


def test_a_part_holds_the_window_rates_and_the_page_shows_ratios_and_percentiles(
    tmp_path: Any,
) -> None:
    state = make_state(tmp_path)
    ring = Ring(60.0)
    engines = {"a": EngineMetrics(0, 1, 0.4, 0.0, prefix_cache_queries=100, prefix_cache_hits=10)}
    record_traffic(state, 4)  # before the first reading: not in any window
    first, _ = read_sample(state.metrics.registry, engines, 100.0)
    ring.push(first)
    record_traffic(state, 40)
    engines = {"a": EngineMetrics(0, 1, 0.5, 0.0, prefix_cache_queries=300, prefix_cache_hits=160)}
    second, in_flight = read_sample(state.metrics.registry, engines, 110.0)
    ring.push(second)
    part = replica_part(
        ring,
        in_flight,
        state.catalog,
        None,
        engines,
        rate_window_s=10.0,
        quantile_window_s=60.0,
    )
    chat = part["groups"]["chat"]
    assert chat["requests"] == pytest.approx(4.0)  # 40 requests in 10 s
    assert chat["errors"] == pytest.approx(1.0)
    assert chat["tokens"] == pytest.approx(20.0)
    assert part["spend"] == {"acme": pytest.approx(40 * 0.03 / 10)}

    whole = {**part, "budgets": [], "alerts": [], "nodes": []}
    view = render(merge_parts([whole]), BOUNDS, replicas=1, shared=False)
    (group,) = view["groups"]
    assert group["rps"] == pytest.approx(4.0)
    assert group["error_rate"] == pytest.approx(0.25)
    assert group["cache_hit_rate"] == pytest.approx(0.5)
    # every request took 0.2 s: the percentiles fall in the (0.1, 0.25] bucket
    assert 0.1 < group["p50_s"] <= 0.25
    assert 0.1 < group["p99_s"] <= 0.25
    assert 0.025 < group["ttft_p99_s"] <= 0.05
    backends = {b["name"]: b for b in view["backends"]}
    assert backends["a"]["kv_cache"] == 0.5
    assert backends["a"]["prefix_hit_rate"] == pytest.approx(150 / 200)
    assert backends["b"]["kv_cache"] is None
    assert backends["a"]["tokens_s"] == pytest.approx(20.0)
    assert view["tenants"] == [
        {"tenant": "acme", "budgets": [], "spend_per_min": pytest.approx(40 * 0.03 * 6)}
    ]


def test_with_one_reading_every_rate_is_zero(tmp_path: Any) -> None:
    state = make_state(tmp_path)
    record_traffic(state, 8)
    ring = Ring(60.0)
    sample, in_flight = read_sample(state.metrics.registry, {}, 1.0)
    ring.push(sample)
    part = replica_part(
        ring, in_flight, state.catalog, None, {}, rate_window_s=10, quantile_window_s=60
    )
    assert part["groups"]["chat"]["requests"] == 0.0
    assert part["groups"]["chat"]["latency"] == []
    assert part["spend"] == {}


def test_a_backend_shows_the_first_state_that_holds(tmp_path: Any) -> None:
    state = make_state(tmp_path)
    backend = state.catalog.groups[0].backends[0]
    assert backend_state(backend) == "up"
    backend.draining = True
    assert backend_state(backend) == "draining"
    backend.health.trip(30.0)
    assert backend_state(backend) == "breaker open"
    backend.health.healthy = False
    assert backend_state(backend) == "down"


def part_of(requests: float, latency: list[float], state: str, **extra: Any) -> dict[str, Any]:
    group = {
        "requests": requests,
        "errors": 0.0,
        "cache_hits": 0.0,
        "cache_lookups": 0.0,
        "tokens": 0.0,
        "in_flight": 1.0,
        "latency": latency,
        "ttft": [],
    }
    backend = {
        "group": "chat",
        "name": "a",
        "url": "http://a",
        "state": state,
        "in_flight": 2,
        "kv_cache": None,
        "prefix_queries": 0.0,
        "prefix_hits": 0.0,
        "tokens": 0.0,
    }
    part: dict[str, Any] = {
        "groups": {"chat": group},
        "backends": [backend],
        "queues": {},
        "spend": {},
        "budgets": [],
        "alerts": [],
        "nodes": [],
    }
    return part | extra


def test_replicas_parts_add_up_and_a_backend_shows_the_worst_state_seen() -> None:
    bounds = (0.1, 1.0, float("inf"))
    one = part_of(2.0, [10.0, 10.0, 10.0], "up", spend={"acme": 0.5})
    two = part_of(3.0, [0.0, 10.0, 10.0], "breaker open", spend={"acme": 0.25})
    view = render(merge_parts([one, two]), bounds, replicas=2, shared=True)
    (group,) = view["groups"]
    assert group["rps"] == 5.0
    assert group["in_flight"] == 2.0
    # 10 observations under 0.1 s and 10 in (0.1, 1]: the median is the top of the first
    assert group["p50_s"] == pytest.approx(0.1)
    (backend,) = view["backends"]
    assert backend["state"] == "breaker open"
    assert backend["in_flight"] == 4
    assert view["tenants"][0]["spend_per_min"] == pytest.approx(45.0)
    assert view["fleet"] == {"replicas": 2, "shared": True}


def test_budgets_and_alerts_are_shown_once_and_a_tenant_admin_sees_its_own() -> None:
    budget = {
        "scope": "tenant:acme",
        "tenant": "acme",
        "key_id": None,
        "window": "day",
        "limit_usd": 1.0,
    }
    alert = {"scope": "tenant:acme", "tenant": "acme", "window": "day", "threshold": 0.8}
    other = {"scope": "tenant:zed", "tenant": "zed", "window": "day", "threshold": 1.0}
    one = part_of(
        0,
        [],
        "up",
        budgets=[{**budget, "spent_usd": 0.5, "remaining_usd": 0.5}],
        alerts=[{**alert, "at": 10.0}, {**other, "at": 12.0}],
    )
    two = part_of(
        0,
        [],
        "up",
        budgets=[{**budget, "spent_usd": 0.9, "remaining_usd": 0.1}],
        alerts=[{**alert, "at": 11.0}],
    )
    view = render(merge_parts([one, two]), (float("inf"),), replicas=2, shared=True)
    assert [a["scope"] for a in view["alerts"]] == ["tenant:zed", "tenant:acme"]
    acme = next(t for t in view["tenants"] if t["tenant"] == "acme")
    assert acme["budgets"] == [
        {
            "scope": "tenant:acme",
            "window": "day",
            "limit_usd": 1.0,
            "spent_usd": 0.9,
            "remaining_usd": 0.1,
            "used": pytest.approx(0.9),
        }
    ]
    mine = only_tenant(view, "acme")
    assert [t["tenant"] for t in mine["tenants"]] == ["acme"]
    assert [a["tenant"] for a in mine["alerts"]] == ["acme"]
    # a backend's or node's URL may carry credentials: not for a tenant admin
    assert view["backends"]
    assert all("url" in b for b in view["backends"])
    assert all("url" not in b for b in mine["backends"])
    assert all("url" not in n for n in mine["nodes"])
