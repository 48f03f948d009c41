"""Simulator and gateway servers for tests, on real loopback sockets."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from gateway_sim.app import SimConfig, create_sim_app
from gateway_sim.profiles import PROFILES

from gateway.app import create_app
from gateway.config_loader import settings_from_mapping
from gateway.routes.front import GatewayApp
from gateway.server import BackgroundServer
from gateway.state import GatewayState


def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passed (a bounded wait on a condition,
    never a timing assertion); returns whether it held."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request with the standard library; returns status, headers and decoded JSON."""
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, dict(err.headers), json.loads(raw) if raw else None


class Sim:
    """A running simulator and its admin API."""

    def __init__(self, server: BackgroundServer, config: SimConfig) -> None:
        self.server = server
        self.config = config

    @property
    def url(self) -> str:
        return self.server.url

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = http_json("GET", f"{self.url}/sim/stats")[2]
        return stats

    def set_faults(self, **faults: Any) -> None:
        status, _, body = http_json("POST", f"{self.url}/sim/faults", faults)
        assert status == 200, body

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10
    ) -> dict[str, Any]:
        """Poll the stats until ``predicate`` holds (bounded); returns the last stats."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if predicate(stats) or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)

    def close_gate(self, name: str = "gate", *, all: bool = True, after_tokens: int = 0) -> None:
        """Close a gate of the simulator (see docs/simulator.md): by default every request waits
        at it before being handled; ``after_tokens`` N holds them after N tokens instead."""
        body = {"all": all, "after_tokens": after_tokens}
        status, _, answer = http_json("POST", f"{self.url}/sim/gates/{name}", body)
        assert status == 200, answer

    def release_gate(self, name: str = "gate") -> int:
        """Open a gate; returns how many requests it was holding."""
        status, _, answer = http_json("POST", f"{self.url}/sim/gates/{name}/release", b"")
        assert status == 200, answer
        released: int = answer["released"]
        return released

    def wait_held(self, count: int, timeout_s: float = 10) -> None:
        """Wait (bounded) until ``count`` requests are held at gates; fails the test otherwise."""
        stats = self.wait_for(lambda s: s["held"] >= count, timeout_s)
        assert stats["held"] == count, f"{stats['held']} requests held, expected {count}"

    @contextmanager
    def gate(
        self, name: str = "gate", *, all: bool = True, after_tokens: int = 0
    ) -> Iterator[None]:
        """A closed gate for the duration of the block (released at its end whatever happens)."""
        self.close_gate(name, all=all, after_tokens=after_tokens)
        try:
            yield
        finally:
            self.release_gate(name)


@contextmanager
def running_sim(
    profile: str = "instant", models: list[str] | None = None, **overrides: Any
) -> Iterator[Sim]:
    """A simulator for the duration of the block: the `instant` profile (no modelled latency)
    unless told otherwise; keyword arguments override profile fields (``step_base_ms=40``)."""
    sim_config = SimConfig(
        models=models or ["sim-model"], profile=PROFILES[profile].with_overrides(overrides)
    )
    with BackgroundServer(create_sim_app(sim_config)) as server:
        yield Sim(server, sim_config)


def group(name: str, *urls: str, model: str = "sim-model", **extra: Any) -> dict[str, Any]:
    """A model-group config mapping over simulator URLs."""
    backends = [{"url": u, "model": model, "name": f"{name}-{i}"} for i, u in enumerate(urls)]
    return {"name": name, "backends": backends, **extra}


class GatewayServer(BackgroundServer):
    """A gateway served in this process; ``state`` is its live :class:`GatewayState`."""

    def __init__(self, app: GatewayApp) -> None:
        super().__init__(app)
        self.state = cast(GatewayState, cast(Any, app.litestar).state.gateway)

    def __enter__(self) -> GatewayServer:
        self.start()
        return self

    def coalesced_waiters(self) -> int:
        """Requests waiting on identical requests in flight (followers of a coalesced flight).

        Reads the coalescer's private bookkeeping: it has no public count of its waiters.
        """
        return sum(f._interest for f in self.state.coalescer._flights.values())

    def wait_coalesced(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait (bounded) until ``count`` requests follow flights; fails the test otherwise."""
        assert eventually(lambda: self.coalesced_waiters() >= count, timeout_s)
        assert self.coalesced_waiters() == count


@contextmanager
def running_gateway(config: dict[str, Any], **kwargs: Any) -> Iterator[GatewayServer]:
    """The gateway app for ``config`` (a mapping as in the YAML file), served for real;
    keyword arguments go to ``create_app`` (``clock=ManualClock()``)."""
    settings = settings_from_mapping(config, "test-config")
    with GatewayServer(create_app(settings, **kwargs)) as server:
        yield server
