"""Both built-in response stores behind one fixture: a real SQLite file, a real redis-server."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_store_redis.store import RedisResponseStore
from gateway_store_sqlite.store import SqliteResponseStore

from gateway.clock import ManualClock
from gateway.stores import ResponseStore
from tests.support.redis_server import RedisServer, running_redis

StoreMaker = Callable[..., ResponseStore]
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_700_000_000.0)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_store(
    backend: str, tmp_path: Path, clock: ManualClock, request: pytest.FixtureRequest
) -> AsyncIterator[StoreMaker]:
    """Opens stores of the parametrized kind on the same data (one file, one key prefix)."""
    opened: list[ResponseStore] = []
    prefix = f"test{next(_prefixes)}:"

    def make(**options: Any) -> ResponseStore:
        store: ResponseStore
        if backend == "sqlite":
            options.setdefault("path", str(tmp_path / "data" / "responses.sqlite3"))
            store = SqliteResponseStore(**options, clock=clock)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisResponseStore(url=server.url, prefix=prefix, **options, clock=clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


@pytest.fixture
async def store(make_store: StoreMaker) -> ResponseStore:
    return make_store()
