"""``gateway_backend_up`` and ``gateway_backend_breaker_state`` say what routing sees when
``/metrics`` is read, with or without traffic since (the alerts on open breakers and groups
with every backend down read them).

Real parts: simulators and the gateway served on loopback; the breakers' time is a
:class:`ManualClock` the test moves; health checks run on real time (bounded waits).
"""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.clock import ManualClock
from tests.support.servers import Sim, eventually, http_json, running_gateway, running_sim

MASTER = {"authorization": "Bearer sk-master"}


def backend_series(url: str) -> dict[str, dict[str, float]]:
    """``{metric: {backend: value}}`` for the two backend gauges."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found: dict[str, dict[str, float]] = {"up": {}, "breaker": {}}
    names = {"gateway_backend_up": "up", "gateway_backend_breaker_state": "breaker"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                found[names[sample.name]][sample.labels["backend"]] = sample.value
    return found


def config(*sims: Sim) -> dict[str, Any]:
    backends = [
        {"url": s.url, "model": "sim-model", "name": f"chat-{i}"} for i, s in enumerate(sims)
    ]
    group = {
        "name": "chat",
        "backends": backends,
        "health_check": {"interval_s": 0.1, "timeout_s": 0.5},
    }
    return {"auth": {"master_key": "sk-master"}, "models": [group]}


def chat(url: str) -> int:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return http_json("POST", f"{url}/v1/chat/completions", body, MASTER)[0]


def test_an_open_breaker_shows_then_cools_down_without_traffic() -> None:
    with running_sim() as storm, running_sim() as calm:
        storm.set_faults(error_rates={429: 1.0}, retry_after_s=30)
        clock = ManualClock()
        with running_gateway(config(storm, calm), clock=clock) as gw:
            assert backend_series(gw.url) == {
                "up": {"chat-0": 1.0, "chat-1": 1.0},
                "breaker": {"chat-0": 0.0, "chat-1": 0.0},
            }
            assert [chat(gw.url) for _ in range(2)] == [200, 200]  # the 429 was retried
            assert backend_series(gw.url) == {
                "up": {"chat-0": 0.0, "chat-1": 1.0},
                "breaker": {"chat-0": 2.0, "chat-1": 0.0},
            }
            clock.advance(31)  # Retry-After has passed: half-open, with no request since
            assert backend_series(gw.url) == {
                "up": {"chat-0": 1.0, "chat-1": 1.0},
                "breaker": {"chat-0": 1.0, "chat-1": 0.0},
            }


def test_a_group_whose_backends_all_fail_health_checks_reads_all_down() -> None:
    with running_sim() as a, running_sim() as b, running_gateway(config(a, b)) as gw:
        a.set_faults(health_status=503)
        b.set_faults(health_status=503)
        assert eventually(lambda: backend_series(gw.url)["up"] == {"chat-0": 0, "chat-1": 0})
        b.set_faults(health_status=200)
        assert eventually(lambda: backend_series(gw.url)["up"] == {"chat-0": 0, "chat-1": 1})
        status, _, body = http_json("DELETE", f"{gw.url}/admin/backends/chat-0", None, MASTER)
        assert status == 200, body
        # A removed backend's `up` series goes; its breaker series reads closed.
        assert backend_series(gw.url) == {
            "up": {"chat-1": 1.0},
            "breaker": {"chat-0": 0.0, "chat-1": 0.0},
        }
