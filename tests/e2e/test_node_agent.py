"""The GPU node agent end to end: ``gateway node`` as a real process on the ``fake`` GPU backend,
with simulators (``gateway sim``) as its engines, a gateway served for real whose model group
starts empty, and a ``directory`` shared store for scale orders.

- Engines are placed, started, health-checked and registered; the gateway serves through them.
- An engine killed with SIGKILL is restarted, and meanwhile the gateway routes around it: no
  non-streaming request fails.
- A scale order in the shared store (as the ``node_agents`` fleet scaler writes it) starts an
  engine, and a lower one drains and stops engines.
- ``/metrics`` parses with prometheus_client's parser and carries dcgm-exporter's names; the
  fake GPUs' memory follows the engines placed on them.
- SIGTERM drains and deregisters every engine and leaves no process behind.
- The control plane's scale-fleet job, acting through the ``node_agents`` fleet scaler, starts
  an engine on the node.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from gateway_control.directory_store import DirectoryControlStore
from prometheus_client.parser import text_string_to_metric_families

from gateway.config_loader import settings_from_mapping
from gateway.control.base import GroupLoad
from gateway.control.parts import build_fleet_scalers, plugin_registries
from gateway.control.scaling import scale_fleet
from gateway.node import orders
from tests.support.node_agent import alive, deployment, fake_gpus, running_node
from tests.support.processes import free_port
from tests.support.servers import GatewayServer, eventually, http_json, running_gateway

pytestmark = pytest.mark.slow

MASTER = "sk-master-node-agent"
ADMIN = {"authorization": f"Bearer {MASTER}"}


@pytest.fixture
def gateway() -> Iterator[GatewayServer]:
    """A gateway whose `chat` group starts with no backend: the node registers them."""
    config = {"auth": {"master_key": MASTER}, "models": [{"name": "chat", "backends": []}]}
    with running_gateway(config) as gw:
        yield gw


def node_config(gw: GatewayServer, store: Path, **node: Any) -> dict[str, Any]:
    return {
        "control": {
            "store": {"backend": "directory", "options": {"path": str(store)}},
            "gateway_urls": [gw.url],
        },
        "node": {
            "name": "box1",
            "engine_ports": free_port(),
            "gpus": fake_gpus(81559, 81559),
            "registrar": {
                "backend": "gateway_admin",
                "options": {"gateway_urls": [gw.url], "master_key": MASTER},
            },
            "gpu_hour_usd": {"NVIDIA H100 80GB HBM3": 2.5},
            "read_interval_s": 0.2,
            "order_interval_s": 0.2,
            "drain_s": 1.0,
            "restart_backoff_s": 0.2,
            **node,
        },
    }


def gateway_backends(gw: GatewayServer) -> dict[str, dict[str, Any]]:
    _, _, body = http_json("GET", f"{gw.url}/admin/backends", headers=ADMIN)
    return {b["name"]: b for b in body["backends"]}


def chat(client: openai.OpenAI) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    raw.parse()
    return raw.headers["x-gateway-backend"]


def test_engines_serve_survive_a_kill_follow_orders_and_leave_nothing_behind(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    store_path = tmp_path / "control"
    config = node_config(
        gateway,
        store_path,
        deployments=[deployment("chat", "chat", 30000, replicas=2, max_replicas=3)],
    )
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0)
    with running_node(config, tmp_path) as node:
        ready = node.wait_ready(2)
        assert sorted(ready) == ["chat-0", "chat-1"]
        # best_fit: the first engine on GPU 0, the second where it fits tightest (GPU 0 again)
        assert {name: e["gpus"] for name, e in ready.items()} == {"chat-0": [0], "chat-1": [0]}
        assert eventually(lambda: set(gateway_backends(gateway)) == {"box1-chat-0", "box1-chat-1"})
        served = {chat(client) for _ in range(6)}
        assert served == {"box1-chat-0", "box1-chat-1"}

        # The fake GPUs' memory follows the engines; the names are dcgm-exporter's.
        status, text = node.get("/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        used = {s.labels["gpu"]: s.value for s in families["DCGM_FI_DEV_FB_USED"].samples}
        assert used["0"] >= 60000 > used["1"]
        sample = families["DCGM_FI_DEV_FB_USED"].samples[0]
        assert {"gpu", "UUID", "modelName", "Hostname", "device"} <= set(sample.labels)
        assert sample.labels["Hostname"] == "box1"
        for name in (
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_GPU_TEMP",
            "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_SM_CLOCK",
            "DCGM_FI_DEV_FB_FREE",
        ):
            assert len(families[name].samples) == 2, name
        states = {
            s.labels["engine"]: s.labels["state"]
            for s in families["gateway_node_engine_state"].samples
        }
        assert states == {"chat-0": "ready", "chat-1": "ready"}
        cost = families["gateway_node_cost_usd_per_hour"].samples[0].value
        assert cost == pytest.approx(5.0)  # two H100s at 2.5 an hour

        # SIGKILL one engine while requests keep coming: none fails, and it comes back.
        victim = ready["chat-1"]
        os.kill(victim["pid"], signal.SIGKILL)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: chat(client), range(40)))
        # every one answered (a failure raises in chat()), by a backend of the group
        assert len(answers) == 40
        assert set(answers) <= {"box1-chat-0", "box1-chat-1"}
        back = node.wait_for(
            lambda s: any(
                e["name"] == "chat-1" and e["state"] == "ready" and e["restarts"] == 1
                for e in s["engines"]
            )
        )
        again = {e["name"]: e for e in back["engines"]}["chat-1"]
        assert again["pid"] != victim["pid"]
        assert not alive(victim["pid"])
        assert eventually(lambda: "box1-chat-1" in gateway_backends(gateway))

        # A scale order for three: the third engine starts and is registered.
        store = DirectoryControlStore(str(store_path))
        asyncio.run(orders.write_order(store, "chat", 3, time.time()))
        node.wait_ready(3)
        assert eventually(
            lambda: set(gateway_backends(gateway)) == {"box1-chat-0", "box1-chat-1", "box1-chat-2"}
        )
        # One: the highest-numbered engines drain, deregister and stop.
        pids = {n: e["pid"] for n, e in node.engines().items()}
        asyncio.run(orders.write_order(store, "chat", 1, time.time()))
        node.wait_for(lambda s: [e["name"] for e in s["engines"]] == ["chat-0"])
        assert set(gateway_backends(gateway)) == {"box1-chat-0"}
        assert not alive(pids["chat-1"])
        assert not alive(pids["chat-2"])
        assert chat(client) == "box1-chat-0"

        # SIGTERM: drained, deregistered, nothing left.
        code, output = node.terminate()
        assert code == 0, output
    assert gateway_backends(gateway) == {}
    assert not alive(pids["chat-0"])


def test_an_engine_that_fits_nowhere_is_reported_not_forced(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    config = node_config(
        gateway,
        tmp_path / "control",
        deployments=[
            deployment("big", "chat", 60000, priority=1),
            deployment("huge", "chat", 90000),  # more than any GPU has
        ],
    )
    with running_node(config, tmp_path) as node:
        node.wait_ready(1)
        status = node.wait_for(lambda s: "huge-0" in s["unplaced"])
        assert "90000" in status["unplaced"]["huge-0"]
        _, text = node.get("/metrics")
        unplaced = [
            s.labels["engine"]
            for f in text_string_to_metric_families(text)
            if f.name == "gateway_node_engine_unplaced"
            for s in f.samples
        ]
        assert unplaced == ["huge-0"]


def test_scale_fleet_through_the_node_agents_scaler_starts_an_engine(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    store_path = tmp_path / "control"
    config = node_config(
        gateway,
        store_path,
        deployments=[deployment("chat", "chat", 30000, replicas=1, max_replicas=2)],
    )
    config["control"]["scaling"] = {
        "chat": {
            "scaler": {
                "backend": "node_agents",
                "options": {
                    "group": "chat",
                    "store": {"backend": "directory", "options": {"path": str(store_path)}},
                },
            },
            "min_replicas": 1,
            "max_replicas": 2,
            "target_waiting": 2,
            "max_step": 1,
        }
    }
    settings = settings_from_mapping(config, "node.yaml")
    with running_node(config, tmp_path) as node:
        node.wait_ready(1)
        store = DirectoryControlStore(str(store_path))

        async def decide(waiting: float) -> Any:
            scalers = build_fleet_scalers(settings, plugin_registries(settings))
            try:
                [decision] = await scale_fleet(
                    settings,
                    loads={"chat": GroupLoad("chat", 1, waiting, 1, 0.5)},
                    scalers=scalers,
                    store=store,
                    now=time.time(),
                )
                return decision
            finally:
                for scaler in scalers.values():
                    await scaler.aclose()

        # Before any order the scaler reads the ready engines the nodes published.
        def published_ready() -> int:
            statuses = asyncio.run(orders.node_statuses(store))
            return sum(s.groups["chat"].ready for s in statuses.values() if "chat" in s.groups)

        assert eventually(lambda: published_ready() == 1)
        decision = asyncio.run(decide(waiting=6))  # 3x the target: one more
        assert (decision.current, decision.desired) == (1, 2)
        ready = node.wait_ready(2)
        assert sorted(ready) == ["chat-0", "chat-1"]
        assert eventually(lambda: set(gateway_backends(gateway)) == {"box1-chat-0", "box1-chat-1"})
        assert node.status()["orders"] == {"chat": 2}
