"""Scale orders and node statuses through both real control stores (a directory, a
redis-server), the split of an order across nodes, and the ``node_agents`` fleet scaler."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import gateway_node
import pytest
from gateway_control.directory_store import DirectoryControlStore
from gateway_control.redis_store import RedisControlStore
from gateway_node.scaler import NodeAgentsScaler

from gateway.config_loader import ConfigError
from gateway.control.base import ControlStore
from gateway.errors import ServiceUnavailableError
from gateway.node.orders import (
    AGENTS,
    FORGET_S,
    ORDERS,
    GroupStatus,
    NodeStatus,
    node_statuses,
    publish_node_status,
    read_orders,
    serving,
    share,
    status_state,
    write_order,
)
from gateway.plugins import build_registered, collect_registries, make_plugin_manager
from tests.support.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.anyio
_prefixes = itertools.count()
StoreMaker = Callable[[], ControlStore]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(params=["directory", "redis"])
def store_choice(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """One store's ``{backend, options}``, fresh per test (a new directory or key prefix)."""
    if request.param == "directory":
        return {"backend": "directory", "options": {"path": str(tmp_path / "store")}}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"backend": "redis", "options": {"url": server.url, "prefix": f"t{next(_prefixes)}:"}}


@pytest.fixture
async def make_store(store_choice: dict[str, Any]) -> AsyncIterator[StoreMaker]:
    """Opens stores on the same data (as the control plane and each node agent would)."""
    opened: list[ControlStore] = []

    def make() -> ControlStore:
        kinds: dict[str, Callable[..., ControlStore]] = {
            "directory": DirectoryControlStore,
            "redis": RedisControlStore,
        }
        store = kinds[store_choice["backend"]](**store_choice["options"])
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


def ready(n: int, capacity: int = 4) -> GroupStatus:
    return GroupStatus(running=n, ready=n, capacity=capacity)


async def test_orders_round_trip_between_stores_one_group_at_a_time(make_store: StoreMaker) -> None:
    control, node = make_store(), make_store()
    assert await read_orders(node) == {}
    await write_order(control, "chat", 3, now=100.0)
    await write_order(control, "embed", 1, now=101.0)
    await write_order(control, "chat", 5, now=102.0)
    assert await read_orders(node) == {"chat": 5, "embed": 1}
    assert await node.get_state(ORDERS) == {
        "groups": {"chat": {"replicas": 5, "at": 102.0}, "embed": {"replicas": 1, "at": 101.0}}
    }
    await write_order(control, "embed", 0, now=103.0)  # zero is an order too
    assert await read_orders(node) == {"chat": 5, "embed": 0}
    with pytest.raises(ValueError, match="0 or more"):
        await write_order(control, "chat", -1, now=104.0)


async def test_unreadable_orders_and_statuses_are_skipped(make_store: StoreMaker) -> None:
    store = make_store()
    bad = {"a": {"replicas": -1}, "b": {"replicas": True}, "c": "3", "ok": {"replicas": 2}}
    await store.put_state(ORDERS, {"groups": bad})
    assert await read_orders(store) == {"ok": 2}
    await store.put_state(status_state("broken"), {"at": 1.0, "groups": {"chat": {"ready": 1}}})
    await publish_node_status(store, "fine", {"chat": ready(1)}, now=2.0)
    assert list(await node_statuses(store, ["broken", "fine", "never"])) == ["fine"]


async def test_published_statuses_are_listed_through_the_registry(make_store: StoreMaker) -> None:
    node_a, node_b, control = make_store(), make_store(), make_store()
    await publish_node_status(node_b, "gpu-b.local", {"chat": ready(1, capacity=2)}, now=50.0)
    await publish_node_status(
        node_a, "gpu-a", {"chat": GroupStatus(2, 1, 3), "embed": ready(1)}, now=60.0
    )
    statuses = await node_statuses(control)
    assert statuses == {
        "gpu-a": NodeStatus(
            "gpu-a", 60.0, {"chat": GroupStatus(2, 1, 3), "embed": GroupStatus(1, 1, 4)}
        ),
        "gpu-b.local": NodeStatus("gpu-b.local", 50.0, {"chat": GroupStatus(1, 1, 2)}),
    }
    assert list(await node_statuses(control, ["gpu-b.local"])) == ["gpu-b.local"]
    assert await control.get_state(AGENTS) == {"nodes": {"gpu-a": 60.0, "gpu-b.local": 50.0}}
    # A node not heard of for FORGET_S leaves the registry on the next publication.
    await publish_node_status(node_a, "gpu-a", {}, now=50.0 + FORGET_S + 1)
    assert list(await node_statuses(control)) == ["gpu-a"]
    with pytest.raises(ValueError, match="node name"):
        await publish_node_status(node_a, "gpu a/../x", {}, now=1.0)


def test_serving_keeps_fresh_nodes_that_serve_the_group() -> None:
    statuses = {
        "c": NodeStatus("c", 100.0, {"chat": ready(1)}),
        "a": NodeStatus("a", 71.0, {"chat": ready(0)}),
        "stale": NodeStatus("stale", 69.0, {"chat": ready(1)}),
        "other": NodeStatus("other", 100.0, {"embed": ready(1)}),
    }
    assert serving(statuses, "chat", now=100.0, stale_s=30.0) == ["a", "c"]


def test_share_splits_evenly_by_name_and_every_node_agrees() -> None:
    assert [share(5, ["n2", "n1"], me) for me in ("n1", "n2")] == [3, 2]
    assert [share(5, ["n1", "n2"], me) for me in ("n1", "n2")] == [3, 2]  # stable
    assert [share(2, ["c", "b", "a"], me) for me in "abc"] == [1, 1, 0]
    assert share(4, ["a"], "b") == 2  # me counts among the nodes even if not listed
    assert share(0, ["a", "b"], "a") == 0
    for replicas in range(12):
        nodes = ["n1", "n2", "n3", "n4"]
        assert sum(share(replicas, nodes, me) for me in nodes) == replicas
    with pytest.raises(ValueError, match="0 or more"):
        share(-1, ["a"], "a")


async def test_scaler_falls_back_to_ready_engines_of_live_nodes_then_follows_orders(
    make_store: StoreMaker,
) -> None:
    scaler = NodeAgentsScaler(make_store(), "chat", stale_s=30.0)
    node = make_store()
    now = time.time()
    assert await scaler.current() == 0  # no order, no node
    await publish_node_status(node, "a", {"chat": GroupStatus(3, 2, 4)}, now=now)
    await publish_node_status(node, "b", {"chat": ready(1), "embed": ready(5)}, now=now)
    await publish_node_status(node, "gone", {"chat": ready(4)}, now=now - 100)  # stale
    await publish_node_status(node, "other", {"embed": ready(2)}, now=now)
    assert await scaler.current() == 3  # 2 ready on a, 1 on b
    await scaler.set_desired(5)
    assert await scaler.current() == 5
    assert await read_orders(node) == {"chat": 5}
    # What each node agent then runs: its share over the live nodes serving the group.
    live = serving(await node_statuses(node), "chat", now, 30.0)
    assert [share(5, live, me) for me in live] == [3, 2]
    await scaler.set_desired(0)
    assert await scaler.current() == 0  # an order of zero is not "no order"
    await scaler.aclose()


async def test_a_store_that_cannot_be_reached_is_reported() -> None:
    with running_redis() as server:
        url = server.url
    scaler = NodeAgentsScaler(RedisControlStore(url, timeout_s=0.5), "chat")
    try:
        with pytest.raises(ServiceUnavailableError):
            await scaler.current()
        with pytest.raises(ServiceUnavailableError):
            await scaler.set_desired(1)
    finally:
        await scaler.aclose()


async def test_registered_as_node_agents_building_the_named_store(
    store_choice: dict[str, Any], make_store: StoreMaker
) -> None:
    pm = make_plugin_manager(entry_points=False, extra=[("gateway_node", gateway_node)])
    registry = collect_registries(pm).fleet_scalers
    options = {"group": "chat", "store": store_choice, "stale_s": 10}
    scaler = build_registered(registry, "node_agents", options, "gw.yaml", "scaler")
    assert isinstance(scaler, NodeAgentsScaler)
    await scaler.set_desired(2)
    assert await read_orders(make_store()) == {"chat": 2}
    await scaler.aclose()
    bad: list[dict[str, Any]] = [
        {"store": store_choice},
        {"group": "chat"},
        {"group": "chat", "store": {"backend": "s3", "options": {}}},
        {"group": "chat", "store": {"backend": "directory", "path": "x"}},
        {"group": "chat", "store": {**store_choice, "options": {"nope": 1}}},
        {"group": "chat", "store": store_choice, "stale_s": 0},
    ]
    for options in bad:
        with pytest.raises(ConfigError, match=r"scaler\.options"):
            build_registered(registry, "node_agents", options, "gw.yaml", "scaler")
