"""Both control stores against one contract: a real redis-server, a real directory."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_control.directory_store import DirectoryControlStore
from gateway_control.redis_store import RedisControlStore

from gateway.control.base import ControlStore, HealthHint
from gateway.errors import ServiceUnavailableError
from tests.support.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.anyio
StoreMaker = Callable[..., ControlStore]
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(params=["redis", "directory"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreMaker]:
    """Opens stores of the parametrized kind on the same data (one key prefix, one directory)."""
    opened: list[ControlStore] = []
    prefix = f"test{next(_prefixes)}:"

    def make(**options: Any) -> ControlStore:
        store: ControlStore
        if request.param == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisControlStore(url=server.url, prefix=prefix, **options)
        else:
            store = DirectoryControlStore(path=str(tmp_path / "control"), **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


async def test_an_empty_store(make_store: StoreMaker) -> None:
    store = make_store()
    assert await store.current_version() == 0
    assert await store.current_config() is None
    assert await store.config_version(1) is None
    assert await store.config_versions() == []
    assert await store.health() == []
    assert await store.get_state("scale-fleet") == {}


async def test_versions_count_from_one_and_the_newest_is_current(make_store: StoreMaker) -> None:
    store, other = make_store(), make_store()
    texts = ["models: []\n", "models: [{name: a}]\n", "server: {port: 9}\n"]
    published = [await store.publish_config(t, f"file-{i}.yaml") for i, t in enumerate(texts)]
    assert [v.version for v in published] == [1, 2, 3]
    assert await other.current_version() == 3  # another client of the same store sees it
    current = await other.current_config()
    assert current == published[2]
    assert current is not None
    assert current.text == texts[2]
    assert current.source == "file-2.yaml"
    assert current.digest == hashlib.sha256(texts[2].encode()).hexdigest()
    assert current.published_at > 0
    assert await other.config_version(1) == published[0]
    assert [v.version for v in await other.config_versions(limit=2)] == [3, 2]
    assert await other.config_versions(limit=10) == published[::-1]


async def test_only_the_newest_versions_are_kept(make_store: StoreMaker) -> None:
    store = make_store(keep_versions=2)
    for i in range(5):
        await store.publish_config(f"# {i}\n", "f.yaml")
    assert [v.version for v in await store.config_versions(limit=10)] == [5, 4]
    assert await store.config_version(3) is None
    assert await store.current_version() == 5


async def test_concurrent_publishers_get_distinct_versions(make_store: StoreMaker) -> None:
    stores = [make_store() for _ in range(4)]
    texts = [f"# publisher {i % 4}, text {i}\n" for i in range(40)]
    published = await asyncio.gather(
        *(stores[i % 4].publish_config(text, f"p{i % 4}") for i, text in enumerate(texts))
    )
    assert sorted(v.version for v in published) == list(range(1, 41))
    for version in published:  # each number holds the text published with it
        kept = await stores[0].config_version(version.version)
        assert kept is not None
        assert kept.text == version.text
    assert await stores[0].current_version() == 40


async def test_health_hints_are_replaced_by_the_next_sweep(make_store: StoreMaker) -> None:
    store = make_store()
    first = [
        HealthHint("chat", "chat-0", True, 12.5, 1_700_000_000.0),
        HealthHint("chat", "chat-1", False, None, 1_700_000_000.0, "connection refused"),
    ]
    await store.put_health(first)
    assert await make_store().health() == first
    second = [HealthHint("chat", "chat-0", False, None, 1_700_000_060.0, "timeout")]
    await store.put_health(second)
    assert await store.health() == second


async def test_job_state_is_kept_by_name(make_store: StoreMaker) -> None:
    store = make_store()
    await store.put_state("scale-fleet", {"chat": {"last_change": 1.5, "replicas": 3}})
    await store.put_state("other", {"x": [1, 2]})
    assert await make_store().get_state("scale-fleet") == {
        "chat": {"last_change": 1.5, "replicas": 3}
    }
    await store.put_state("scale-fleet", {"chat": {"replicas": 4}})
    assert await store.get_state("scale-fleet") == {"chat": {"replicas": 4}}
    assert await store.get_state("other") == {"x": [1, 2]}
    with pytest.raises(TypeError, match="JSON"):
        await store.put_state("bad", {"x": object()})


async def test_an_unreachable_store_is_service_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    stores: list[ControlStore] = [
        RedisControlStore(url=RedisServer().url, timeout_s=0.5),  # a free port nobody serves
        DirectoryControlStore(path=str(blocker / "control")),
    ]
    for store in stores:
        with pytest.raises(ServiceUnavailableError) as caught:
            await store.publish_config("models: []\n", "f.yaml")
        assert caught.value.status == 503
        with pytest.raises(ServiceUnavailableError):
            await store.put_state("job", {})
        await store.aclose()
    with pytest.raises(ServiceUnavailableError):
        await stores[0].current_version()


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="url"):
        RedisControlStore(url="http://localhost")
    with pytest.raises(ValueError, match="timeout_s"):
        RedisControlStore(timeout_s=0)
    with pytest.raises(TypeError, match="prefix"):
        RedisControlStore(prefix=1)  # type: ignore[arg-type]
    for make in (RedisControlStore, lambda **o: DirectoryControlStore(str(tmp_path), **o)):
        with pytest.raises(ValueError, match="keep_versions"):
            make(keep_versions=0)
    with pytest.raises(TypeError, match="path"):
        DirectoryControlStore(path="")


async def test_the_directory_holds_readable_files(tmp_path: Path) -> None:
    store = DirectoryControlStore(path=str(tmp_path), keep_versions=2)
    for i in range(3):
        await store.publish_config(f"models: []  # {i}\n", f"f{i}.yaml")
    await store.put_health([HealthHint("chat", "chat-0", True, 1.0, 2.0)])
    await store.put_state("scale-fleet", {"a": 1})
    names = sorted(p.name for p in tmp_path.iterdir())  # noqa: ASYNC240 (a test's look)
    assert names == [
        "current",
        "health.json",
        "lock",
        "state",
        "v000002.json",
        "v000002.yaml",
        "v000003.json",
        "v000003.yaml",
    ]
    assert (tmp_path / "v000003.yaml").read_text() == "models: []  # 2\n"
    assert (tmp_path / "current").read_text() == "3"
    assert json.loads((tmp_path / "state" / "scale-fleet.json").read_text()) == {"a": 1}
    with pytest.raises(ValueError, match="file name"):
        await store.get_state("../escape")


async def test_a_version_file_left_by_a_dead_publisher_is_never_reused(tmp_path: Path) -> None:
    store = DirectoryControlStore(path=str(tmp_path))
    await store.publish_config("models: []\n", "f.yaml")
    (tmp_path / "v000002.yaml").write_text("half-written\n")  # died before `current`
    assert await store.current_version() == 1
    assert (await store.publish_config("models: []\n", "g.yaml")).version == 3


async def test_the_redis_store_keeps_its_keys_under_the_prefix(redis_server: RedisServer) -> None:
    import redis

    store = RedisControlStore(url=redis_server.url, prefix="t-keys:")
    await store.publish_config("models: []\n", "f.yaml")
    await store.put_health([])
    await store.put_state("job", {"a": 1})
    sync = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert sorted(sync.keys("t-keys:*")) == [
        "t-keys:health",
        "t-keys:state:job",
        "t-keys:{config}:current",
        "t-keys:{config}:versions",
    ]
    assert sync.get("t-keys:{config}:current") == "1"
    sync.close()
    await store.aclose()
