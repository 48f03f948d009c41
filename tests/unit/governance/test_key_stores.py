"""The key stores: one conformance suite for ``sqlite`` (a real file) and ``redis`` (a real
redis-server), the Redis change feed, and the read-only ``config`` store."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import redis.asyncio as aioredis
from gateway_keys import register_key_stores
from gateway_keys.config_store import ConfigKeyStore
from gateway_keys.redis_store import RedisKeyStore
from gateway_keys.sqlite_store import SqliteKeyStore

from gateway.clock import ManualClock
from gateway.governance.keystore import (
    Change,
    ConflictError,
    KeyStore,
    KeyStoreUnavailableError,
    ReadOnlyStoreError,
)
from gateway.governance.records import (
    Budget,
    KeyRecord,
    TenantRecord,
    hash_secret,
    new_key,
    secret_matches,
)
from tests.support import redis_server as redis_server_module
from tests.support.redis_server import RedisServer, running_redis

PEPPER = b"test-pepper-0123456789abcdef"
StoreMaker = Callable[[], KeyStore]
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StoreMaker]:
    """Opens stores of the parametrized kind on the same data (one file, one prefix)."""
    opened: list[KeyStore] = []
    prefix = f"test{next(_prefixes)}"
    clock = ManualClock(start=1_700_000_000.0)

    def make() -> KeyStore:
        store: KeyStore
        if kind == "sqlite":
            path = str(tmp_path / "data" / "keys.sqlite3")
            store = SqliteKeyStore(path=path, clock=clock, pepper=PEPPER)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisKeyStore(url=server.url, prefix=prefix, clock=clock, pepper=PEPPER)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


@pytest.fixture
def store(make_store: StoreMaker) -> KeyStore:
    return make_store()


def key(key_id: str, created_at: float, tenant: str | None = "acme", **fields: Any) -> KeyRecord:
    return KeyRecord(
        id=key_id, secret_hash="ab" * 32, tenant=tenant, created_at=created_at, **fields
    )


# -- conformance ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_keys_are_created_read_updated_and_listed(store: KeyStore) -> None:
    assert store.writable
    assert await store.get_key("k00000000001") is None
    await store.put_tenant(TenantRecord(name="acme"), create=True)
    await store.put_tenant(TenantRecord(name="beta"), create=True)
    first = key("k00000000002", 10.0, rpm=5, budgets=[Budget(50, "month")])
    await store.put_key(first, create=True)
    await store.put_key(key("k00000000001", 10.0), create=True)  # same time: by id
    await store.put_key(key("k00000000000", 20.0, tenant="beta"), create=True)
    await store.put_key(key("k00000000003", 5.0, tenant=None), create=True)
    assert await store.get_key("k00000000002") == first

    ids = [k.id for k in await store.list_keys()]
    assert ids == ["k00000000003", "k00000000001", "k00000000002", "k00000000000"]
    assert [k.id for k in await store.list_keys("acme")] == ["k00000000001", "k00000000002"]
    assert await store.list_keys("nobody") == []

    with pytest.raises(ConflictError):
        await store.put_key(key("k00000000002", 30.0), create=True)
    with pytest.raises(KeyError):
        await store.put_key(key("k0000000000x", 30.0), create=False)
    assert await store.get_key("k0000000000x") is None

    changed = msgspec.structs.replace(first, rpm=None, revoked_at=99.0, name="ci")
    await store.put_key(changed, create=False)
    assert await store.get_key("k00000000002") == changed


@pytest.mark.anyio
async def test_a_key_moved_to_another_tenant_is_listed_there_only(store: KeyStore) -> None:
    await store.put_key(key("k00000000001", 1.0, tenant="acme"), create=True)
    await store.put_key(key("k00000000001", 1.0, tenant="beta"), create=False)
    assert await store.list_keys("acme") == []
    assert [k.id for k in await store.list_keys("beta")] == ["k00000000001"]


@pytest.mark.anyio
async def test_tenants_and_their_deletion(store: KeyStore) -> None:
    acme = TenantRecord(name="acme", rpm=100, models=["llama"])
    await store.put_tenant(acme, create=True)
    await store.put_tenant(TenantRecord(name="Zed"), create=True)
    await store.put_tenant(TenantRecord(name="beta"), create=True)
    assert await store.get_tenant("acme") == acme
    assert await store.get_tenant("nobody") is None
    assert [t.name for t in await store.list_tenants()] == ["Zed", "acme", "beta"]
    with pytest.raises(ConflictError):
        await store.put_tenant(TenantRecord(name="acme"), create=True)
    with pytest.raises(KeyError):
        await store.put_tenant(TenantRecord(name="nobody"), create=False)
    await store.put_tenant(msgspec.structs.replace(acme, blocked=True), create=False)
    assert (await store.get_tenant("acme")) == msgspec.structs.replace(acme, blocked=True)

    # A revoked key still belongs to its tenant: the tenant cannot go while it is there.
    await store.put_key(key("k00000000001", 1.0, revoked_at=2.0), create=True)
    with pytest.raises(ConflictError):
        await store.delete_tenant("acme")
    assert await store.get_tenant("acme") is not None
    await store.delete_tenant("beta")
    assert await store.get_tenant("beta") is None
    assert [t.name for t in await store.list_tenants()] == ["Zed", "acme"]
    with pytest.raises(KeyError):
        await store.delete_tenant("beta")


@pytest.mark.anyio
async def test_a_second_store_on_the_same_data_sees_the_writes(make_store: StoreMaker) -> None:
    one, two = make_store(), make_store()
    await one.put_key(key("k00000000001", 1.0, tenant=None), create=True)
    assert (await two.get_key("k00000000001")) == key("k00000000001", 1.0, tenant=None)
    with pytest.raises(ConflictError):
        await two.put_key(key("k00000000001", 1.0, tenant=None), create=True)


async def _stored_bytes(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> bytes:
    """Everything the store keeps, as bytes: the SQLite files, or a DUMP of every Redis key."""
    if kind == "sqlite":
        return b"".join(p.read_bytes() for p in sorted((tmp_path / "data").iterdir()))
    server: RedisServer = request.getfixturevalue("redis_server")
    client = aioredis.Redis.from_url(server.url)
    try:
        dumps = [await client.dump(name) or b"" async for name in client.scan_iter()]
        return b"".join(dumps)
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_the_secret_is_never_stored_only_its_hash(
    store: KeyStore, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    key_id, secret, full = new_key()
    digest = hash_secret(secret, PEPPER)
    record = KeyRecord(id=key_id, secret_hash=digest, tenant=None, created_at=1.0)
    await store.put_key(record, create=True)
    stored = await store.get_key(key_id)
    assert stored is not None
    assert secret_matches(secret, stored.secret_hash, PEPPER)

    data = await _stored_bytes(kind, tmp_path, request)
    assert digest.encode() in data  # (the hash is there: the search looks in the right place)
    assert secret.encode() not in data
    assert full.encode() not in data


@pytest.mark.anyio
async def test_sqlite_and_redis_stores_are_registered() -> None:
    registered: dict[str, object] = {}
    register_key_stores(lambda name, factory: registered.__setitem__(name, factory))
    assert registered == {
        "config": ConfigKeyStore,
        "sqlite": SqliteKeyStore,
        "redis": RedisKeyStore,
    }


# -- sqlite specifics ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_sqlite_has_no_feed_and_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteKeyStore(path=str(tmp_path / "deep" / "dir" / "keys.sqlite3"), pepper=PEPPER)
    assert store.changes() is None
    assert await store.get_key("k00000000001") is None
    assert (tmp_path / "deep" / "dir" / "keys.sqlite3").exists()
    await store.aclose()
    with pytest.raises(KeyStoreUnavailableError):
        await store.get_key("k00000000001")


def test_sqlite_options_are_checked() -> None:
    with pytest.raises(TypeError):
        SqliteKeyStore(path="")
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        SqliteKeyStore(path="x", busy_timeout_ms=-1)


# -- redis specifics -----------------------------------------------------------------------


def test_redis_options_are_checked() -> None:
    with pytest.raises(ValueError, match="url"):
        RedisKeyStore()
    with pytest.raises(ValueError, match="url"):
        RedisKeyStore(url="http://x")
    with pytest.raises(TypeError, match="cluster"):
        RedisKeyStore(url="redis://127.0.0.1:1/0", cluster="yes")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_redis_changes_reach_another_store_instance(redis_server: RedisServer) -> None:
    prefix = f"feed{next(_prefixes)}"
    writer = RedisKeyStore(url=redis_server.url, prefix=prefix)
    reader = RedisKeyStore(url=redis_server.url, prefix=prefix)
    feed = reader.changes()
    assert feed is not None
    try:
        with anyio.fail_after(10):
            assert await anext(feed) == Change("all", "")  # subscribed
            await writer.put_tenant(TenantRecord(name="acme"), create=True)
            assert await anext(feed) == Change("tenant", "acme")
            await writer.put_key(key("k00000000001", 1.0), create=True)
            assert await anext(feed) == Change("key", "k00000000001")
            with pytest.raises(ConflictError):  # a refused write is not announced
                await writer.put_key(key("k00000000001", 1.0), create=True)
            await writer.put_key(key("k00000000001", 1.0, blocked=True), create=False)
            assert await anext(feed) == Change("key", "k00000000001")
    finally:
        await feed.aclose()  # type: ignore[attr-defined]
        await writer.aclose()
        await reader.aclose()


@pytest.mark.anyio
async def test_redis_feed_raises_when_the_server_goes_and_calls_fail() -> None:
    server = RedisServer().start()
    store = RedisKeyStore(url=server.url, prefix="gone")
    feed = store.changes()
    assert feed is not None
    try:
        with anyio.fail_after(10):
            assert await anext(feed) == Change("all", "")
            server.stop()
            with pytest.raises(KeyStoreUnavailableError):
                await anext(feed)
            with pytest.raises(KeyStoreUnavailableError):
                await store.get_key("k00000000001")
    finally:
        server.stop()
        await store.aclose()


# -- config --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_config_store_hashes_declared_keys_and_is_read_only() -> None:
    key_id, secret, full = new_key()
    hashed = hash_secret("another-secret", PEPPER)
    store = ConfigKeyStore(
        tenants=[{"name": "acme", "models": ["llama"], "rpm": 60}],
        keys=[
            {"key": full, "tenant": "acme", "name": "ci", "budgets": [{"usd": 5, "window": "day"}]},
            {"id": "abcdefghijkl", "secret_hash": hashed, "role": "admin", "tenant": "acme"},
        ],
        pepper=PEPPER,
    )
    assert not store.writable
    assert store.changes() is None
    record = await store.get_key(key_id)
    assert record is not None
    assert secret_matches(secret, record.secret_hash, PEPPER)
    assert record.budgets == [Budget(5, "day")]
    assert secret not in msgspec.json.encode(record).decode()
    assert (await store.get_tenant("acme")) == TenantRecord(name="acme", models=["llama"], rpm=60)
    assert sorted(k.id for k in await store.list_keys("acme")) == sorted([key_id, "abcdefghijkl"])
    assert [t.name for t in await store.list_tenants()] == ["acme"]
    for write in (
        store.put_key(record, create=False),
        store.put_tenant(TenantRecord(name="x"), create=True),
        store.delete_tenant("acme"),
    ):
        with pytest.raises(ReadOnlyStoreError):
            await write
    await store.aclose()


@pytest.mark.parametrize(
    ("tenants", "keys", "problem"),
    [
        ([], [{"key": "sk-gw-nope"}], "keys[0].key: not a virtual key"),
        ([], [{"tenant": None}], "keys[0].key: required"),
        ([], [{"secret_hash": "zz"}], "keys[0].secret_hash"),
        ([], [{"secret_hash": "ab" * 32}], "keys[0].id: required"),
        ([], [{"id": "BAD", "secret_hash": "ab" * 32}], "keys[0].id"),
        ([], [{"id": "abcdefghijkl", "secret_hash": "ab" * 32, "rpm": "x"}], "keys[0].rpm"),
        ([], [{"id": "abcdefghijkl", "secret_hash": "ab" * 32, "bogus": 1}], "bogus"),
        (
            [],
            [{"id": "abcdefghijkl", "secret_hash": "ab" * 32, "tenant": "acme"}],
            "keys[0].tenant",
        ),
        ([{"name": "a"}, {"name": "a"}], [], "tenants[1].name"),
        ([{"name": "a", "budgets": [{"usd": 1, "window": "fortnight"}]}], [], "tenants[0].budgets"),
    ],
)
def test_config_store_names_the_bad_entry(
    tenants: list[dict[str, Any]], keys: list[dict[str, Any]], problem: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        ConfigKeyStore(tenants=tenants, keys=keys, pepper=PEPPER)


def test_config_store_names_the_entry_whose_id_does_not_match_its_key() -> None:
    _, _, full = new_key()
    good = {"id": "abcdefghijkl", "secret_hash": "ab" * 32}
    with pytest.raises(ValueError, match=r"keys\[2\]\.id"):
        ConfigKeyStore(
            keys=[good, {"key": new_key()[2]}, {"key": full, "id": "x" * 12}], pepper=PEPPER
        )


# -- redis cluster -------------------------------------------------------------------------

# (The cluster helper of tests/support/redis_server.py, where this branch's base has it.)
_running_cluster = getattr(redis_server_module, "running_redis_cluster", None)


@pytest.mark.anyio
@pytest.mark.skipif(_running_cluster is None, reason="no Redis Cluster helper in tests/support")
async def test_redis_cluster_mode_keeps_every_key_in_one_slot() -> None:
    assert _running_cluster is not None
    with _running_cluster() as cluster:
        writer = RedisKeyStore(url=cluster.url, prefix="gw", cluster=True)
        reader = RedisKeyStore(url=cluster.url, prefix="gw", cluster=True)
        feed = reader.changes()
        assert feed is not None
        try:
            with anyio.fail_after(20):
                assert await anext(feed) == Change("all", "")
                await writer.put_tenant(TenantRecord(name="acme"), create=True)
                assert await anext(feed) == Change("tenant", "acme")
                await writer.put_key(key("k00000000002", 2.0), create=True)
                await writer.put_key(key("k00000000001", 1.0), create=True)
                assert await anext(feed) == Change("key", "k00000000002")
                with pytest.raises(ConflictError):
                    await writer.put_key(key("k00000000001", 1.0), create=True)
                ids = [k.id for k in await reader.list_keys("acme")]
                assert ids == ["k00000000001", "k00000000002"]
                assert [t.name for t in await reader.list_tenants()] == ["acme"]
                with pytest.raises(ConflictError):
                    await writer.delete_tenant("acme")
        finally:
            await feed.aclose()  # type: ignore[attr-defined]
            await writer.aclose()
            await reader.aclose()
