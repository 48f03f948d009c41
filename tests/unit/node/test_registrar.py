"""The ``gateway_admin`` registrar against real gateways on loopback: engines (simulators)
registered, served through, drained and removed on every replica, idempotently, and a replica
that is down or refuses reported after the others were told."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import gateway_node
import pytest
from gateway_node.registrar import GatewayAdminRegistrar, backend_entry

from gateway.config_loader import ConfigError
from gateway.errors import ServiceUnavailableError
from gateway.node.base import EngineEndpoint
from gateway.plugins import build_registered, collect_registries, make_plugin_manager
from tests.support.servers import GatewayServer, Sim, group, http_json, running_gateway, running_sim

pytestmark = pytest.mark.anyio
MASTER = "sk-master-node"
AS_ADMIN = {"authorization": f"Bearer {MASTER}"}


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Sim, list[GatewayServer]]]:
    """Two gateway replicas serving `chat` from one simulator and `gpu` from no backend yet
    (node agents register its engines), and a second simulator (the node's engine)."""
    with running_sim() as first, running_sim() as engine:
        models = [group("chat", first.url), {"name": "gpu", "backends": []}]
        config = {"models": models, "auth": {"master_key": MASTER}}
        with running_gateway(config) as one, running_gateway(config) as two:
            yield engine, [one, two]


def backends(gw: GatewayServer) -> dict[str, dict[str, Any]]:
    status, _, body = http_json("GET", f"{gw.url}/admin/backends", headers=AS_ADMIN)
    assert status == 200, body
    return {b["name"]: b for b in body["backends"]}


def chat(gw: GatewayServer, model: str) -> tuple[int, str | None]:
    """A chat request's status and the backend that served it."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    status, headers, _ = http_json("POST", f"{gw.url}/v1/chat/completions", body, AS_ADMIN)
    return status, headers.get("x-gateway-backend")


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: nothing listens there


def endpoint(engine: Sim, name: str, group: str = "gpu") -> EngineEndpoint:
    return EngineEndpoint(name, group, engine.url, "sim-model", {"gpu_hour_usd": 3.5})


async def test_register_drain_deregister_on_every_replica_idempotently(
    fleet: tuple[Sim, list[GatewayServer]],
) -> None:
    engine, gateways = fleet
    registrar = GatewayAdminRegistrar([gw.url for gw in gateways], MASTER, timeout_s=5)
    node_engine = endpoint(engine, "node1-gpu-0")
    try:
        assert chat(gateways[0], "gpu")[0] == 503  # no backend yet
        await registrar.register(node_engine)
        await registrar.register(node_engine)  # already there: fine
        for gw in gateways:
            listed = backends(gw)["node1-gpu-0"]
            assert (listed["model"], listed["url"]) == ("gpu", engine.url)
            assert listed["upstream_model"] == "sim-model"
            assert not listed["draining"]
        before = engine.stats()["completed"]
        for gw in gateways:
            assert [chat(gw, "gpu") for _ in range(2)] == [(200, "node1-gpu-0")] * 2
        assert engine.stats()["completed"] == before + 4

        await registrar.drain(node_engine)
        assert all(backends(gw)["node1-gpu-0"]["draining"] for gw in gateways)
        await registrar.deregister(node_engine)  # the group's last backend
        await registrar.deregister(node_engine)  # gone: fine
        await registrar.drain(node_engine)  # gone: fine
        assert all("node1-gpu-0" not in backends(gw) for gw in gateways)
        assert chat(gateways[1], "gpu")[0] == 503
    finally:
        await registrar.aclose()


async def test_a_replica_down_is_reported_after_the_others_were_told(
    fleet: tuple[Sim, list[GatewayServer]],
) -> None:
    engine, gateways = fleet
    down = dead_url()
    registrar = GatewayAdminRegistrar([down, gateways[1].url], MASTER, timeout_s=2)
    node_engine = endpoint(engine, "node2-gpu-0")
    try:
        with pytest.raises(ServiceUnavailableError, match=f"{down} cannot be reached"):
            await registrar.register(node_engine)
        assert "node2-gpu-0" in backends(gateways[1])
        with pytest.raises(ServiceUnavailableError, match=down):
            await registrar.deregister(node_engine)
        assert "node2-gpu-0" not in backends(gateways[1])
    finally:
        await registrar.aclose()


async def test_a_refusal_is_not_success_and_a_stale_backend_of_that_name_is_replaced(
    fleet: tuple[Sim, list[GatewayServer]],
) -> None:
    engine, gateways = fleet
    gw = gateways[0]
    wrong_key = GatewayAdminRegistrar([gw.url], "sk-not-the-master")
    registrar = GatewayAdminRegistrar([gw.url], MASTER)
    try:
        with pytest.raises(ServiceUnavailableError, match=f"{gw.url} answered 401"):
            await wrong_key.register(endpoint(engine, "node3-chat-0", "chat"))
        unknown = endpoint(engine, "node3-x-0", "no-such-group")
        with pytest.raises(ServiceUnavailableError, match="answered 404"):
            await registrar.register(unknown)
        # Left by an earlier run at another address: replaced by the engine, never passed for it.
        stale = {"name": "node3-chat-0", "url": "http://127.0.0.1:9", "model": "sim-model"}
        assert http_json("POST", f"{gw.url}/admin/models/chat/backends", stale, AS_ADMIN)[0] == 201
        await registrar.register(endpoint(engine, "node3-chat-0", "chat"))
        _, _, listed = http_json("GET", f"{gw.url}/admin/backends", headers=AS_ADMIN)
        [replaced] = [b for b in listed["backends"] if b["name"] == "node3-chat-0"]
        assert replaced["url"] == engine.url
        await registrar.deregister(endpoint(engine, "node3-chat-0", "chat"))
        assert "node3-chat-0" not in backends(gw)
    finally:
        await wrong_key.aclose()
        await registrar.aclose()


def test_the_backend_entry_is_what_the_gateway_config_takes() -> None:
    engine = EngineEndpoint("n-a-0", "a", "http://10.0.0.5:8100/", "m", {"gpu_hour_usd": 2})
    assert backend_entry(engine) == {
        "name": "n-a-0",
        "url": "http://10.0.0.5:8100",
        "model": "m",
        "provider": "vllm",
        "local": True,
        "price": {"gpu_hour_usd": 2},
    }
    assert "price" not in backend_entry(EngineEndpoint("n-a-0", "a", "http://h:1", "m"))


def test_registered_as_gateway_admin_with_checked_options() -> None:
    pm = make_plugin_manager(entry_points=False, extra=[("gateway_node", gateway_node)])
    registry = collect_registries(pm).engine_registrars
    good = {"gateway_urls": ["http://gw:8000"], "master_key": "k"}
    assert isinstance(
        build_registered(registry, "gateway_admin", good, "node.yaml", "node.registrar"),
        GatewayAdminRegistrar,
    )
    bad: list[dict[str, Any]] = [
        {"gateway_urls": [], "master_key": "k"},
        {"gateway_urls": ["gw:8000"], "master_key": "k"},
        {"gateway_urls": ["http://gw:8000"], "master_key": ""},
        {**good, "timeout_s": "5"},
        {**good, "timeout_s": 0},
        {**good, "retries": 3},
    ]
    for options in bad:
        with pytest.raises(ConfigError, match=r"node\.registrar\.options"):
            build_registered(registry, "gateway_admin", options, "node.yaml", "node.registrar")


async def test_with_resolve_dns_every_address_of_a_name_is_told(
    fleet: tuple[Sim, list[GatewayServer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A headless Service's name resolves to one address per gateway pod. Here the resolver
    answers for two names of the test's (both replicas listen on 127.0.0.1, on two ports);
    every other name goes to the system's resolver, which knows none of these."""
    engine, gateways = fleet
    ports = {
        f"replica-{i}.gateway-headless": gw.url.rsplit(":", 1)[1] for i, gw in enumerate(gateways)
    }
    system = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ports:
            assert str(port) == ports[host]
            return system("127.0.0.1", port, *args, **kwargs)
        return system(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    urls = [f"http://{host}:{port}" for host, port in ports.items()]
    missing = "http://no-such-replica.invalid:8080"
    registrar = GatewayAdminRegistrar([*urls, missing], MASTER, timeout_s=5, resolve_dns=True)
    node_engine = endpoint(engine, "node4-gpu-0")
    try:
        with pytest.raises(ServiceUnavailableError, match=r"invalid:8080 does not"):
            await registrar.register(node_engine)
        for gw in gateways:  # the resolved ones were told all the same
            assert backends(gw)["node4-gpu-0"]["url"] == engine.url
        registrar.gateway_urls = urls
        await registrar.deregister(node_engine)
        assert all("node4-gpu-0" not in backends(gw) for gw in gateways)
    finally:
        await registrar.aclose()


def test_resolve_dns_is_for_plain_http_and_brackets_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="http://"):
        GatewayAdminRegistrar(["https://gw:8443"], MASTER, resolve_dns=True)
    with pytest.raises(TypeError, match="resolve_dns"):
        GatewayAdminRegistrar(["http://gw:8080"], MASTER, resolve_dns="yes")  # type: ignore[arg-type]

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::2", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    found = asyncio.run(GatewayAdminRegistrar._addresses("http://gateway-headless/"))
    assert found == ["http://10.0.0.7:80/", "http://[fd00::2]:80/"]
