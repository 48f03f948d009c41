"""Failure handling end to end against several simulator replicas: a replica killed mid-load, a
429 storm, a slow replica, fallback to another provider, context-length fallback, runtime drain.
No timing assertions: counts, states and outcomes."""

from __future__ import annotations

import concurrent.futures
import urllib.request
from typing import Any

import openai
from gateway_sim.app import create_sim_app
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from gateway.clock import ManualClock
from gateway.server import BackgroundServer
from tests.support.servers import Sim, eventually, http_json, running_gateway, running_sim

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
FAST_RECOVERY = {
    "breaker": {"cooldown_s": 0.3},
    "health_check": {"interval_s": 0.2, "timeout_s": 0.5},
}
MASTER = {"authorization": "Bearer sk-master"}


def group_of(
    name: str, sims: list[Sim], strategy: str = "round_robin", **extra: Any
) -> dict[str, Any]:
    backends = [
        {"url": s.url, "model": "sim-model", "name": f"{name}-{i}"} for i, s in enumerate(sims)
    ]
    return {
        "name": name,
        "backends": backends,
        "routing": {"strategy": strategy},
        **FAST_RECOVERY,
        **extra,
    }


def admin_state(gateway: str) -> dict[str, dict[str, Any]]:
    status, _, body = http_json("GET", f"{gateway}/admin/backends", headers=MASTER)
    assert status == 200
    return {b["name"]: b for b in body["backends"]}


until = eventually  # a bounded wait on a condition (health checks run on real time)


def chat(gateway: str, **body: Any) -> tuple[int, dict[str, str], Any]:
    return http_json(
        "POST",
        f"{gateway}/v1/chat/completions",
        {"model": "chat", "messages": USER, "max_tokens": 8, **body},
        MASTER,
    )


def test_replica_killed_mid_load_then_revived() -> None:
    with (
        running_sim(step_base_ms=5) as a,
        running_sim(step_base_ms=5) as b,
        running_sim(step_base_ms=5) as c,
    ):
        config = {"models": [group_of("chat", [a, b, c])], "auth": {"master_key": "sk-master"}}
        clock = ManualClock()  # the breakers' time: their cool-down passes when the test says
        with running_gateway(config, clock=clock) as gw:
            port = b.server.port
            results: list[int] = []
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(chat, gw.url) for _ in range(40)]
                until(lambda: sum(f.done() for f in futures) >= 10)
                b.server.stop()  # killed while requests are in flight
                futures += [pool.submit(chat, gw.url) for _ in range(60)]
                results = [f.result()[0] for f in futures]
            assert results == [200] * 100  # clients saw no error
            state = admin_state(gw.url)["chat-1"]
            assert not state["available"]
            # Everything sent after the kill (and what b dropped) went to the live replicas.
            assert a.stats()["completed"] + c.stats()["completed"] >= 60
            revived = BackgroundServer(create_sim_app(b.config), port=port).start()
            try:
                assert until(lambda: admin_state(gw.url)["chat-1"]["healthy"])  # probes see it
                clock.advance(FAST_RECOVERY["breaker"]["cooldown_s"])  # half-open: a probe may go
                assert until(
                    lambda: (
                        chat(gw.url)[1].get("x-gateway-backend") == "chat-1"
                        and admin_state(gw.url)["chat-1"]["breaker"] == "closed"
                    )
                )
            finally:
                revived.stop()


def test_429_storm_moves_traffic_and_benches_the_stormer() -> None:
    with running_sim() as storm, running_sim() as calm:
        storm.set_faults(error_rates={429: 1.0}, retry_after_s=30)
        config = {"models": [group_of("chat", [storm, calm])], "auth": {"master_key": "sk-master"}}
        with running_gateway(config) as gw:
            outcomes = [chat(gw.url) for _ in range(20)]
            assert [status for status, _, _ in outcomes] == [200] * 20
            assert {h["x-gateway-backend"] for _, h, _ in outcomes} == {"chat-1"}
            assert storm.stats()["injected_errors"] == 1  # benched for its Retry-After
            assert admin_state(gw.url)["chat-0"]["breaker"] == "open"
            with urllib.request.urlopen(f"{gw.url}/metrics") as resp:
                text = resp.read().decode()
            retries = sum(
                s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "gateway_retries_total"
            )
            assert retries == 1


def test_slow_replica_is_avoided_by_p2c() -> None:
    with running_sim() as a, running_sim() as b, running_sim() as slow:
        slow.set_faults(delay_ms=150)
        config = {"models": [group_of("chat", [a, b, slow], strategy="p2c_ewma")]}
        with running_gateway(config) as gw, concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: chat(gw.url)[0], range(60)))
        assert statuses == [200] * 60
        assert slow.stats()["completed"] < 60 * 0.2


def test_fallback_to_another_provider_when_every_replica_is_down() -> None:
    import socket

    def dead_url() -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{s.getsockname()[1]}"

    with running_sim(models=["claude-sim"]) as claude:
        llama = {
            "name": "chat",
            "fallbacks": ["claude"],
            **FAST_RECOVERY,
            "backends": [{"url": dead_url(), "model": "x"}, {"url": dead_url(), "model": "x"}],
        }
        cloud = {
            "name": "claude",
            "backends": [
                {"provider": "anthropic", "url": claude.url, "model": "claude-sim", "api_key": "k"}
            ],
        }
        with (
            running_gateway({"models": [llama, cloud]}) as gw,
            openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client,
        ):
            for _ in range(3):
                raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
                assert raw.headers["x-gateway-backend"] == "claude-0"
                assert raw.parse().choices[0].message.content
            streamed = list(
                client.chat.completions.create(model="chat", messages=USER, stream=True)
            )
            assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
            with urllib.request.urlopen(f"{gw.url}/metrics") as resp:
                text = resp.read().decode()
            fallbacks = sum(
                s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "gateway_fallbacks_total"
            )
            assert fallbacks == 4
        assert claude.stats()["completed"] == 4


def test_context_length_fallback() -> None:
    with running_sim(max_model_len=200) as small, running_sim() as large:
        config = {
            "models": [
                group_of("chat", [small], context_window_fallbacks=["long"]),
                group_of("long", [large]),
            ]
        }
        with running_gateway(config) as gw:
            status, headers, _ = chat(gw.url, messages=[{"role": "user", "content": "x" * 2000}])
            assert status == 200
            assert headers["x-gateway-backend"] == "long-0"
            assert chat(gw.url)[1]["x-gateway-backend"] == "chat-0"


def test_runtime_drain_add_and_remove_keep_requests_in_flight() -> None:
    with running_sim(step_base_ms=20) as a, running_sim() as b, running_sim() as c:
        config = {"models": [group_of("chat", [a, b])], "auth": {"master_key": "sk-master"}}
        with (
            running_gateway(config) as gw,
            openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-master", max_retries=0) as client,
        ):
            stream = client.chat.completions.with_raw_response.create(
                model="chat",
                messages=USER,
                max_tokens=40,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            assert stream.headers["x-gateway-backend"] == "chat-0"
            assert (
                http_json("POST", f"{gw.url}/admin/backends/chat-0/drain", headers=MASTER)[0] == 200
            )
            assert {chat(gw.url)[1]["x-gateway-backend"] for _ in range(4)} == {"chat-1"}
            chunks = list(stream.parse())  # the drained backend finishes its stream
            assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 40
            status, _, added = http_json(
                "POST",
                f"{gw.url}/admin/models/chat/backends",
                {"url": c.url, "model": "sim-model", "name": "chat-new"},
                MASTER,
            )
            assert status == 201
            assert added["name"] == "chat-new"
            assert http_json("DELETE", f"{gw.url}/admin/backends/chat-1", headers=MASTER)[0] == 200
            assert {chat(gw.url)[1]["x-gateway-backend"] for _ in range(4)} == {"chat-new"}
            assert http_json("GET", f"{gw.url}/admin/backends")[0] == 401
            bad = http_json(
                "POST", f"{gw.url}/admin/models/chat/backends", {"provider": "nope"}, MASTER
            )
            assert bad[0] == 400
            assert bad[2]["error"]["param"] == "provider"


def test_config_reload_applies_backend_changes(tmp_path: Any) -> None:
    from gateway.app import create_app
    from gateway.config_loader import load_settings

    def write(urls: dict[str, str], extra: str = "") -> None:
        backends = "\n".join(
            f'      - {{name: {n}, url: "{u}", model: sim-model}}' for n, u in urls.items()
        )
        path.write_text(
            f"auth: {{master_key: sk-master}}\nmodels:\n  - name: chat\n"
            f"    backends:\n{backends}\n{extra}"
        )

    path = tmp_path / "gateway.yaml"
    with running_sim() as a, running_sim() as b, running_sim() as c:
        write({"a": a.url, "b": b.url})
        with BackgroundServer(create_app(load_settings(path))) as gw:
            chat(gw.url)
            chat(gw.url)
            write(
                {"a": a.url, "c": c.url},
                '  - name: extra\n    backends: [{url: "' + c.url + '", model: sim-model}]\n',
            )
            status, _, report = http_json("POST", f"{gw.url}/admin/reload", headers=MASTER)
            assert status == 200
            assert report == {
                "added": ["c"],
                "removed": ["b"],
                "replaced": [],
                "added_models": ["extra"],
                "needs_restart": [],
            }
            assert {chat(gw.url)[1]["x-gateway-backend"] for _ in range(6)} == {"a", "c"}
            assert admin_state(gw.url)["a"]["latency_s"] is not None  # kept its live state
            assert (
                http_json(
                    "POST",
                    f"{gw.url}/v1/chat/completions",
                    {"model": "extra", "messages": USER},
                    MASTER,
                )[0]
                == 200
            )
            path.write_text("models: [{name: chat, backends: [{url: nope}]}]\n")
            status, _, error = http_json("POST", f"{gw.url}/admin/reload", headers=MASTER)
            assert status == 400
            assert "models[0].backends[0].url" in error["error"]["message"]
            assert {chat(gw.url)[1]["x-gateway-backend"] for _ in range(4)} == {"a", "c"}


def test_active_health_checks_take_a_replica_out_and_back() -> None:
    with running_sim() as a, running_sim() as b:
        config = {"models": [group_of("chat", [a, b])], "auth": {"master_key": "sk-master"}}
        with running_gateway(config) as gw:
            b.set_faults(health_status=503)
            assert until(lambda: not admin_state(gw.url)["chat-1"]["healthy"])
            assert {chat(gw.url)[1]["x-gateway-backend"] for _ in range(6)} == {"chat-0"}
            assert http_json("GET", f"{gw.url}/readyz")[0] == 200
            b.set_faults(health_status=404)  # no health route still means "up"
            assert until(lambda: admin_state(gw.url)["chat-1"]["healthy"])
            assert "chat-1" in {chat(gw.url)[1]["x-gateway-backend"] for _ in range(6)}
            a.set_faults(health_status=503)
            b.set_faults(health_status=503)
            assert until(lambda: http_json("GET", f"{gw.url}/readyz")[0] == 503)


def test_backends_added_at_run_time_are_health_checked() -> None:
    with running_sim() as a, running_sim() as late:
        late.set_faults(health_status=503)
        config = {"models": [group_of("chat", [a])], "auth": {"master_key": "sk-master"}}
        with running_gateway(config) as gw:
            status, _, _ = http_json(
                "POST",
                f"{gw.url}/admin/models/chat/backends",
                {"url": late.url, "model": "sim-model", "name": "late"},
                MASTER,
            )
            assert status == 201
            assert until(lambda: not admin_state(gw.url)["late"]["healthy"])
            assert {chat(gw.url)[1]["x-gateway-backend"] for _ in range(4)} == {"chat-0"}
