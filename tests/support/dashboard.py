"""A gateway configured for the dashboard's tests, and a reader of its event stream."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config_loader import settings_from_mapping
from gateway.control.parts import plugin_registries
from gateway.node.agent import NodeAgent
from gateway.node.runtime import gpu_backend, node_parts
from gateway.node.server import serve
from gateway.providers.base import ProviderContext
from tests.support.processes import free_port

MASTER = "sk-master-dashboard"


def dashboard_config(tmp_path: Path, *sim_urls: str, **extra: Any) -> dict[str, Any]:
    """A master key, a SQLite key store in ``tmp_path``, and model group ``chat`` priced so
    that each request costs about $0.0038, over the simulators at ``sim_urls`` (backends
    ``chat-0``, ``chat-1``...), probed every 0.2 s; the page updates every 0.5 s."""
    backends = [
        {
            "url": url,
            "model": "sim-model",
            "name": f"chat-{i}",
            "price": {"input_per_mtok": 100.0, "output_per_mtok": 300.0},
        }
        for i, url in enumerate(sim_urls)
    ]
    return {
        "auth": {"master_key": MASTER},
        "governance": {"data_dir": str(tmp_path)},
        "models": [
            {
                "name": "chat",
                "backends": backends,
                "health_check": {"interval_s": 0.2, "timeout_s": 0.5, "unhealthy_after": 1},
            }
        ],
        "dashboard": {"update_interval_s": 0.5},
        **extra,
    }


def read_updates(
    url: str, count: int, headers: dict[str, str] | None = None, timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    """The first ``count`` updates of ``url``'s ``/dashboard/events`` (bounded by
    ``timeout_s`` per read)."""
    request = urllib.request.Request(f"{url}/dashboard/events", headers=headers or {})
    updates: list[dict[str, Any]] = []
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response:
            if line.startswith(b"data:"):
                updates.append(json.loads(line[5:]))
                if len(updates) == count:
                    break
    return updates


def wait_for_update(
    url: str,
    predicate: Callable[[dict[str, Any]], bool],
    headers: dict[str, str] | None = None,
    timeout_s: float = 15.0,
) -> dict[str, Any] | None:
    """Follow ``url``'s ``/dashboard/events`` (the kept history first, then live updates)
    until an update satisfies ``predicate``; that update, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # a stream ends after a while: follow the next one
        request = urllib.request.Request(f"{url}/dashboard/events", headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            for line in response:
                if line.startswith(b"data:"):
                    update: dict[str, Any] = json.loads(line[5:])
                    if predicate(update):
                        return update
                if time.monotonic() > deadline:
                    break
    return None


class NodeAgentThread:
    """A real node agent (``gateway node``'s agent and HTTP face) served in this process on
    a daemon thread with its own event loop: the same parts as the command builds, without a
    subprocess's start-up (the dashboard's browser test needs a node, not a process)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.settings = settings_from_mapping(config, "node-config")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._agent: NodeAgent | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        registries = plugin_registries(self.settings)
        gpus = gpu_backend(self.settings, registries)
        context = ProviderContext()
        await context.start()
        try:
            agent = NodeAgent(self.settings, node_parts(self.settings, registries, context, gpus))
            runner = await serve(agent, "127.0.0.1", self.port)
            try:
                self._loop, self._agent = asyncio.get_running_loop(), agent
                self._ready.set()
                await agent.run()
            finally:
                await runner.cleanup()
        finally:
            await context.close()
            gpus.close()

    def __enter__(self) -> NodeAgentThread:
        self._thread.start()
        if not self._ready.wait(30) or self._failure is not None:
            raise RuntimeError(f"the node agent did not start: {self._failure!r}")
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._agent is not None:
            asyncio.run_coroutine_threadsafe(self._agent.stop(), self._loop).result(30)
        self._thread.join(30)
