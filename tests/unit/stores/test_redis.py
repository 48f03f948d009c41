"""What is particular to the ``redis`` store: its keys, Redis's own expiry, failures."""

from __future__ import annotations

import anyio
import pytest
import redis
from gateway_store_redis.store import RedisResponseStore

from gateway.clock import ManualClock
from gateway.stores import StoredObject, StoreUnavailableError
from gateway.stores.base import Kind
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio


def record(id: str, at: float = 1.0, kind: Kind = "response") -> StoredObject:
    return StoredObject(id=id, kind=kind, created_at=at, model="m", body={"id": id})


async def test_keys_share_the_namespace_hash_tag_and_expire(redis_server: RedisServer) -> None:
    store = RedisResponseStore(url=redis_server.url, prefix="t-keys:", ttl_s=60)
    await store.put("kabc", record("resp_1"))
    await store.update_metadata("kabc", "resp_1", {"a": "b"})
    sync = redis.Redis.from_url(redis_server.url)
    keys = sorted(k.decode() if isinstance(k, bytes) else k for k in sync.keys("t-keys:*"))
    assert keys == ["t-keys:{kabc}:i:response", "t-keys:{kabc}:o:resp_1", "t-keys:{kabc}:x"]
    for key in keys:
        assert 0 < sync.pttl(key) <= 60_000  # the object's TTL survived the metadata update
    await store.delete("kabc", "resp_1")
    assert sync.zcard("t-keys:{kabc}:i:response") == 0
    assert sync.zcard("t-keys:{kabc}:x") == 0
    sync.close()
    await store.aclose()


async def test_redis_expiry_reclaims_the_memory(redis_server: RedisServer) -> None:
    store = RedisResponseStore(url=redis_server.url, prefix="t-exp:", ttl_s=0.2)
    await store.put("ns", record("resp_1"))
    await anyio.sleep(0.3)
    sync = redis.Redis.from_url(redis_server.url)
    assert sync.keys("t-exp:*") == []
    sync.close()
    await store.aclose()


async def test_a_changed_kind_moves_the_object_between_listings(
    redis_server: RedisServer,
) -> None:
    store = RedisResponseStore(url=redis_server.url, prefix="t-kind:")
    await store.put("ns", record("x1"))
    await store.put("ns", record("x1", kind="chat.completion"))
    assert (await store.list("ns", "response")).data == ()
    assert [r.id for r in (await store.list("ns", "chat.completion")).data] == ["x1"]
    await store.aclose()


async def test_an_unreachable_redis_is_store_unavailable(redis_server: RedisServer) -> None:
    dead = RedisServer()  # a free port nobody listens on
    store = RedisResponseStore(url=dead.url, timeout_ms=200)
    with pytest.raises(StoreUnavailableError) as caught:
        await store.get("ns", "resp_1")
    assert caught.value.status == 503
    with pytest.raises(StoreUnavailableError):
        await store.put("ns", record("resp_1"))
    await store.aclose()


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="url"):
        RedisResponseStore(url="http://localhost")
    with pytest.raises(ValueError, match="timeout_ms"):
        RedisResponseStore(timeout_ms=0)
    with pytest.raises(TypeError, match="prefix"):
        RedisResponseStore(prefix=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sweep_limit"):
        RedisResponseStore(sweep_limit=-5)


async def test_listing_unlists_only_what_is_still_dead(redis_server: RedisServer) -> None:
    clock = ManualClock(start=1000.0)
    store = RedisResponseStore(
        url=redis_server.url, prefix="t-gone:", ttl_s=10, sweep_limit=0, clock=clock
    )
    await store.put("ns", record("old", 1.0))
    clock.advance(10)
    await store.put("ns", record("new", 2.0))
    sync = redis.Redis.from_url(redis_server.url)
    assert sync.zcard("t-gone:{ns}:i:response") == 2  # no sweep on writes
    assert [r.id for r in (await store.list("ns", "response")).data] == ["new"]
    assert sync.zrange("t-gone:{ns}:i:response", 0, -1) == [b"new"]
    assert sync.zrange("t-gone:{ns}:x", 0, -1) == [b"new"]
    await store._unlist("ns", ["new"])  # raced by a put: a live object stays listed
    assert sync.zrange("t-gone:{ns}:i:response", 0, -1) == [b"new"]
    sync.close()
    await store.aclose()
