"""The replicas' snapshots in both control stores (a real redis-server, a real directory), and
the fleet board over them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_control.directory_store import DirectoryControlStore
from gateway_control.redis_store import RedisControlStore
from gateway_vllm import parse_engine_metrics

from gateway.dashboard.fleet import FleetBoard, SharesSnapshots, replica_name
from tests.support.redis_server import RedisServer, running_redis

_prefixes = itertools.count()
Maker = Callable[[], SharesSnapshots]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(params=["redis", "directory"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Maker]:
    """Opens stores of the parametrized kind on the same data."""
    opened: list[RedisControlStore | DirectoryControlStore] = []
    prefix = f"dash{next(_prefixes)}:"

    def make() -> SharesSnapshots:
        store: RedisControlStore | DirectoryControlStore
        if request.param == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisControlStore(url=server.url, prefix=prefix)
        else:
            store = DirectoryControlStore(path=str(tmp_path / "control"))
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


async def eventually(check: Callable[[], Any], timeout_s: float = 10.0) -> bool:
    """Await ``check()`` until it is true (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.mark.anyio
async def test_every_replica_reads_every_live_snapshot_until_it_expires(make_store: Maker) -> None:
    one, two = make_store(), make_store()
    assert isinstance(one, SharesSnapshots)
    assert await one.snapshots() == []
    await one.put_snapshot("r-1", b'{"n":1}', ttl_s=60)
    await two.put_snapshot("r-2", b'{"n":2}', ttl_s=0.3)
    await two.put_snapshot("r-2", b'{"n":3}', ttl_s=0.3)  # replaces its own
    assert sorted(await one.snapshots()) == [b'{"n":1}', b'{"n":3}']

    async def expired() -> bool:
        return await two.snapshots() == [b'{"n":1}']

    assert await eventually(expired)


@pytest.mark.anyio
async def test_the_board_publishes_this_replica_and_reads_the_others(make_store: Maker) -> None:
    a = FleetBoard(make_store(), replica_name(), ttl_s=30)
    b = FleetBoard(make_store(), replica_name(), ttl_s=30)
    assert a.replica != b.replica
    assert await b.exchange({"replica": b.replica, "n": 2}) == [{"replica": b.replica, "n": 2}]
    parts = await a.exchange({"replica": a.replica, "n": 1})
    assert parts == [{"replica": a.replica, "n": 1}, {"replica": b.replica, "n": 2}]


@pytest.mark.anyio
async def test_a_store_that_fails_leaves_the_board_to_this_replica(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    board = FleetBoard(DirectoryControlStore(path=str(blocked)), "r-1", ttl_s=30)
    assert await board.exchange({"replica": "r-1"}) is None


def test_the_vllm_plugin_reads_the_prefix_cache_counters_old_and_new() -> None:
    new = (
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0"} 0.0\n'
        "# TYPE vllm:prefix_cache_queries counter\n"
        'vllm:prefix_cache_queries_total{engine="0"} 200.0\n'
        'vllm:prefix_cache_queries_created{engine="0"} 1.7e9\n'
        "# TYPE vllm:prefix_cache_hits counter\n"
        'vllm:prefix_cache_hits_total{engine="0"} 50.0\n'
    )
    reading = parse_engine_metrics(new, 1.0)
    assert reading is not None
    assert (reading.prefix_cache_queries, reading.prefix_cache_hits) == (200.0, 50.0)
    old = new.replace("vllm:prefix_cache", "vllm:gpu_prefix_cache")
    legacy = parse_engine_metrics(old, 1.0)
    assert legacy is not None
    assert legacy.prefix_cache_hits == 50.0
