"""The metrics the gateway, the simulator and the node agent really export, read from their
``/metrics`` while they run for real: the gateway served with governance, the cache, admission
control and a control store configured (so that every family registers) and some traffic sent
(so that labelled families have samples whose label names can be read), the simulator behind
it, and a node agent with fake GPUs on its own HTTP server (in this process: a subprocess would
spend most of the test's time importing). :func:`running_exporters` keeps them running for a
Prometheus to scrape.

A family with no sample yet still appears (prometheus_client writes its ``# TYPE`` line), so its
name is known even when its labels are not.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.config_loader import settings_from_mapping
from gateway.control.parts import plugin_registries
from gateway.node.agent import NodeAgent
from gateway.node.base import GpuBackend
from gateway.node.runtime import gpu_backend, node_parts
from gateway.node.server import serve
from gateway.providers.base import ProviderContext
from tests.support.node_agent import fake_gpus
from tests.support.processes import free_port
from tests.support.servers import Sim, http_json, running_gateway, running_sim

MASTER = "sk-master-monitoring"
PEPPER_ENV = "GATEWAY_KEY_PEPPER"

# The sample names Prometheus reads from a family of each type (the text format's suffixes);
# ``_created`` is known only where a sample shows it (not every exporter writes it).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


@dataclass
class Exported:
    """What one or more exporters expose.

    Attributes:
        names: every sample name a query may select (suffixes included).
        labels: the label names seen on samples, per sample name (only names that had samples).
    """

    names: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=dict)

    def add(self, text: str) -> None:
        """Add the families of one exposition."""
        for family in text_string_to_metric_families(text):
            self.names.update(family.name + s for s in SUFFIXES[family.type])
            for sample in family.samples:
                self.names.add(sample.name)
                self.labels.setdefault(sample.name, set()).update(sample.labels)

    def merged(self, other: Exported) -> Exported:
        labels = {k: set(v) for k, v in self.labels.items()}
        for name, seen in other.labels.items():
            labels.setdefault(name, set()).update(seen)
        return Exported(self.names | other.names, labels)


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text: str = resp.read().decode()
        return text


def gateway_config(sim: Sim, work: Path) -> dict[str, Any]:
    price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    backend = {"url": sim.url, "model": "sim-model", "name": "chat-0", "price": price}
    return {
        "auth": {"master_key": MASTER},
        "governance": {
            "data_dir": str(work),
            "usage": {
                "sinks": [{"backend": "sqlite", "options": {"path": str(work / "usage.db")}}],
                "flush_interval_s": 0.05,
            },
        },
        "control": {"store": {"backend": "directory", "options": {"path": str(work / "control")}}},
        "models": [
            {
                "name": "chat",
                "backends": [backend],
                "cache": {"enabled": True},
                "scheduling": {"max_in_flight": 4},
            }
        ],
    }


def send_traffic(url: str) -> None:
    """A tenant with a budget and a key of it; a request twice (a miss, then a cache hit), a
    stream, and a request for an unknown model."""
    admin = {"authorization": f"Bearer {MASTER}"}
    tenant = {"name": "acme", "budgets": [{"usd": 10.0, "window": "day"}]}
    status, _, body = http_json("POST", f"{url}/admin/tenants", tenant, admin)
    assert status == 201, body
    status, _, body = http_json("POST", f"{url}/admin/keys", {"tenant": "acme"}, admin)
    assert status == 201, body
    key = {"authorization": f"Bearer {body['key']}"}
    chat = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 4,
        "temperature": 0,
    }
    for _ in range(2):
        status, _, body = http_json("POST", f"{url}/v1/chat/completions", chat, key)
        assert status == 200, body
    stream = {**chat, "stream": True, "stream_options": {"include_usage": True}}
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(stream).encode(),
        headers={"content-type": "application/json", **key},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert b"[DONE]" in resp.read()
    status, _, _ = http_json("POST", f"{url}/v1/chat/completions", {**chat, "model": "nope"}, key)
    assert status == 404


@contextmanager
def pepper() -> Iterator[None]:
    """The key pepper the gateway needs, for the block (module fixtures cannot monkeypatch)."""
    before = os.environ.get(PEPPER_ENV)
    os.environ[PEPPER_ENV] = "pepper-of-the-monitoring-tests"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PEPPER_ENV, None)
        else:
            os.environ[PEPPER_ENV] = before


@dataclass
class _NodeAgentServer:
    """A node agent and its HTTP server, and what must be closed after them."""

    url: str
    runner: web.AppRunner
    context: ProviderContext
    gpus: GpuBackend

    @classmethod
    async def start(cls) -> _NodeAgentServer:
        config = {"node": {"name": "box1", "gpus": fake_gpus(81559, 81559), "port": free_port()}}
        settings = settings_from_mapping(config, "monitoring-test")
        registries = plugin_registries(settings)
        gpus = gpu_backend(settings, registries)
        context = ProviderContext()
        await context.start()
        agent = NodeAgent(settings, node_parts(settings, registries, context, gpus))
        await agent.read_once()
        runner = await serve(agent, agent.node.host, agent.node.port)
        return cls(f"http://{agent.node.host}:{agent.node.port}", runner, context, gpus)

    async def aclose(self) -> None:
        await self.runner.cleanup()
        await self.context.close()
        self.gpus.close()


@contextmanager
def serving_node_agent() -> Iterator[str]:
    """A node agent with two fake GPUs, read once, on its own HTTP server for the block (its
    event loop in a thread of this process; without the agent's loops and signal handlers);
    yields its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="node-agent", daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(_NodeAgentServer.start(), loop).result(60)
        try:
            yield server.url
        finally:
            asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@dataclass(frozen=True)
class Fleet:
    """The exporters, running: base URLs."""

    gateway: str
    simulator: str
    node_agent: str


@contextmanager
def running_exporters(work: Path) -> Iterator[Fleet]:
    """The gateway (after :func:`send_traffic`), its simulator and a node agent, for the block."""
    with (
        serving_node_agent() as node,
        pepper(),
        running_sim() as sim,
        running_gateway(gateway_config(sim, work)) as gw,
    ):
        send_traffic(gw.url)
        yield Fleet(gw.url, sim.url, node)


def exported_by_all(work: Path) -> dict[str, Exported]:
    """What the gateway, the simulator and the node agent export, by exporter."""
    found = {name: Exported() for name in ("gateway", "simulator", "node agent")}
    with running_exporters(work) as fleet:
        found["gateway"].add(scrape(fleet.gateway))
        found["simulator"].add(scrape(fleet.simulator))
        found["node agent"].add(scrape(fleet.node_agent))
    return found
