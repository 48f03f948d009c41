"""The key directory: authentication, the cache and its invalidation, against real stores
(a SQLite file; a real redis-server for the change feed between replicas)."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from gateway_keys.redis_store import RedisKeyStore
from gateway_keys.sqlite_store import SqliteKeyStore

from gateway.clock import ManualClock
from gateway.errors import AuthenticationError, PermissionDeniedError, ServiceUnavailableError
from gateway.governance.directory import KeyDirectory
from gateway.governance.keystore import Change, KeyStore
from gateway.governance.pepper import load_pepper
from gateway.governance.records import (
    PEPPER_ENV,
    KeyRecord,
    TenantRecord,
    hash_secret,
    new_key,
)
from tests.support.redis_server import RedisServer, running_redis

PEPPER = b"test-pepper-0123456789abcdef"
TTL = 1.0


class CountingStore(SqliteKeyStore):
    """The real SQLite store, counting its key reads."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.key_reads = 0

    async def get_key(self, key_id: str) -> KeyRecord | None:
        self.key_reads += 1
        return await super().get_key(key_id)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_700_000_000.0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    store = CountingStore(path=str(tmp_path / "keys.sqlite3"), pepper=PEPPER)
    yield store
    await store.aclose()


@pytest.fixture
def directory(store: CountingStore, clock: ManualClock) -> KeyDirectory:
    return KeyDirectory(store, PEPPER, ttl_s=TTL, clock=clock)


async def make_key(store: KeyStore, tenant: str | None = "acme", **fields: Any) -> tuple[str, str]:
    """A new key in ``store``: (its id, the full key)."""
    key_id, secret, full = new_key()
    record = KeyRecord(id=key_id, secret_hash=hash_secret(secret, PEPPER), tenant=tenant, **fields)
    await store.put_key(record, create=True)
    return key_id, full


async def change_key(store: KeyStore, key_id: str, **fields: Any) -> None:
    record = await store.get_key(key_id)
    assert record is not None
    await store.put_key(msgspec.structs.replace(record, **fields), create=False)


async def refused(call: Awaitable[object]) -> str | None:
    """The error code ``call`` raised, or None when it was admitted."""
    try:
        await call
    except (AuthenticationError, PermissionDeniedError, ServiceUnavailableError) as exc:
        return exc.code
    return None


@pytest.mark.anyio
async def test_a_live_key_authenticates_as_its_principal(
    store: CountingStore, directory: KeyDirectory
) -> None:
    await store.put_tenant(TenantRecord(name="acme", models=["llama", "gpt"]), create=True)
    key_id, full = await make_key(store, models=["llama"], rpm=10, role="admin")
    principal = await directory.authenticate(full)
    assert principal.key_id == key_id
    assert principal.tenant == "acme"
    assert principal.tenant_admin == "acme"
    assert principal.allowed_models == frozenset({"llama"})
    assert principal.account is not None
    assert principal.account.key.rpm == 10
    assert principal.limit_scopes == (f"key:{key_id}", "tenant:acme")
    assert await directory.authenticate(full) is principal  # built once per cached entry


@pytest.mark.anyio
async def test_bad_keys_are_refused_alike(store: CountingStore, directory: KeyDirectory) -> None:
    _, full = await make_key(store, tenant=None)
    wrong_secret = full[:-4] + ("aaaa" if not full.endswith("aaaa") else "bbbb")
    unknown = "sk-gw-000000000000-" + "x" * 43
    for presented in ("sk-gw-short", "sk-gw-", "nope", unknown, wrong_secret):
        assert await refused(directory.authenticate(presented)) == "invalid_api_key"
    await directory.authenticate(full)  # cached now; a wrong secret is still checked
    assert await refused(directory.authenticate(wrong_secret)) == "invalid_api_key"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key_fields", "tenant_fields", "code"),
    [
        ({"revoked_at": 1.0}, {}, "key_revoked"),
        ({"blocked": True}, {}, "key_blocked"),
        ({"expires_at": 1_700_000_000.0}, {}, "key_expired"),
        ({}, {"blocked": True}, "tenant_blocked"),
        ({}, {"expires_at": 1_600_000_000.0}, "tenant_expired"),
    ],
)
async def test_refusals_name_their_reason(
    store: CountingStore,
    directory: KeyDirectory,
    key_fields: dict[str, Any],
    tenant_fields: dict[str, Any],
    code: str,
) -> None:
    await store.put_tenant(TenantRecord(name="acme", **tenant_fields), create=True)
    _, full = await make_key(store, **key_fields)
    error = await refused(directory.authenticate(full))
    assert error == code


@pytest.mark.anyio
async def test_status_errors_are_401_for_keys_and_403_for_tenants(
    store: CountingStore, directory: KeyDirectory
) -> None:
    await store.put_tenant(TenantRecord(name="acme", blocked=True), create=True)
    _, revoked = await make_key(store, tenant=None, revoked_at=1.0)
    _, blocked_tenant = await make_key(store)
    with pytest.raises(AuthenticationError) as key_error:
        await directory.authenticate(revoked)
    assert key_error.value.status == 401
    with pytest.raises(PermissionDeniedError) as tenant_error:
        await directory.authenticate(blocked_tenant)
    assert tenant_error.value.status == 403


@pytest.mark.anyio
async def test_a_key_expires_as_time_passes_even_when_cached(
    store: CountingStore, directory: KeyDirectory, clock: ManualClock
) -> None:
    _, full = await make_key(store, tenant=None, expires_at=clock.time() + 100)
    await directory.authenticate(full)
    clock.advance(100)
    assert await refused(directory.authenticate(full)) == "key_expired"


@pytest.mark.anyio
async def test_entries_live_for_the_ttl_unless_invalidated(
    store: CountingStore, directory: KeyDirectory, clock: ManualClock
) -> None:
    key_id, full = await make_key(store, tenant=None)
    await directory.authenticate(full)
    await change_key(store, key_id, revoked_at=clock.time())  # not told: the cache stands
    reads = store.key_reads
    assert await refused(directory.authenticate(full)) is None
    assert store.key_reads == reads
    clock.advance(TTL)
    assert await refused(directory.authenticate(full)) == "key_revoked"
    assert store.key_reads == reads + 1

    other_id, other = await make_key(store, tenant=None)
    await directory.authenticate(other)
    await change_key(store, other_id, blocked=True)
    directory.invalidate(Change("key", other_id))  # told: at once
    assert await refused(directory.authenticate(other)) == "key_blocked"


@pytest.mark.anyio
async def test_a_tenant_change_drops_every_cached_key_of_the_tenant(
    store: CountingStore, directory: KeyDirectory
) -> None:
    await store.put_tenant(TenantRecord(name="acme"), create=True)
    await store.put_tenant(TenantRecord(name="beta"), create=True)
    _, one = await make_key(store)
    _, two = await make_key(store)
    _, other = await make_key(store, tenant="beta")
    for full in (one, two, other):
        await directory.authenticate(full)
    await store.put_tenant(TenantRecord(name="acme", blocked=True), create=False)
    directory.invalidate(Change("tenant", "acme"))
    assert await refused(directory.authenticate(one)) == "tenant_blocked"
    assert await refused(directory.authenticate(two)) == "tenant_blocked"
    reads = store.key_reads
    assert await refused(directory.authenticate(other)) is None
    assert store.key_reads == reads  # beta's key stayed cached


@pytest.mark.anyio
async def test_unknown_ids_are_remembered_for_the_ttl(
    store: CountingStore, directory: KeyDirectory, clock: ManualClock
) -> None:
    key_id, secret, full = new_key()
    assert await refused(directory.authenticate(full)) == "invalid_api_key"
    record = KeyRecord(id=key_id, secret_hash=hash_secret(secret, PEPPER))
    await store.put_key(record, create=True)
    assert await refused(directory.authenticate(full)) == "invalid_api_key"
    assert store.key_reads == 1
    clock.advance(TTL)
    assert await refused(directory.authenticate(full)) is None


@pytest.mark.anyio
async def test_unknown_ids_remembered_are_bounded(store: CountingStore, clock: ManualClock) -> None:
    directory = KeyDirectory(store, PEPPER, ttl_s=TTL, clock=clock, negative_limit=3)
    fulls = [new_key()[2] for _ in range(5)]
    for full in fulls:
        await refused(directory.authenticate(full))
    assert store.key_reads == 5
    await refused(directory.authenticate(fulls[-1]))  # still remembered
    await refused(directory.authenticate(fulls[0]))  # forgotten: read again
    assert store.key_reads == 6


@pytest.mark.anyio
async def test_concurrent_misses_share_one_read(
    store: CountingStore, directory: KeyDirectory
) -> None:
    await store.put_tenant(TenantRecord(name="acme"), create=True)
    _, full = await make_key(store)
    principals = await asyncio.gather(*(directory.authenticate(full) for _ in range(20)))
    assert store.key_reads == 1
    assert all(p is principals[0] for p in principals)


@pytest.mark.anyio
async def test_a_change_during_a_read_is_not_cached_over(
    store: CountingStore, directory: KeyDirectory
) -> None:
    key_id, full = await make_key(store, tenant=None)
    reading = asyncio.ensure_future(directory.authenticate(full))
    await asyncio.sleep(0)  # the read has begun
    directory.invalidate(Change("key", key_id))
    await reading
    await directory.authenticate(full)
    assert store.key_reads == 2  # the read that raced the change was served, not kept


@pytest.mark.anyio
async def test_an_unreachable_store_serves_stale_entries_else_503(
    store: CountingStore, directory: KeyDirectory, clock: ManualClock
) -> None:
    _, cached = await make_key(store, tenant=None)
    _, never_seen = await make_key(store, tenant=None)
    await directory.authenticate(cached)
    await store.aclose()  # from here on every read fails
    clock.advance(TTL * 5)
    assert await refused(directory.authenticate(cached)) is None
    assert directory.stats.stale_served == 1
    with pytest.raises(ServiceUnavailableError) as caught:
        await directory.authenticate(never_seen)
    assert caught.value.status == 503
    assert caught.value.code == "key_store_unavailable"


@pytest.mark.anyio
async def test_run_returns_when_the_store_has_no_feed(directory: KeyDirectory) -> None:
    with anyio.fail_after(5):
        await directory.run()
    assert not directory.pushed
    assert directory.ttl_s == TTL


@pytest.mark.anyio
async def test_a_second_directory_on_the_same_sqlite_file_refuses_within_the_ttl(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = str(tmp_path / "shared.sqlite3")
    here, there = SqliteKeyStore(path=path), SqliteKeyStore(path=path)
    try:
        mine = KeyDirectory(here, PEPPER, ttl_s=TTL, clock=clock)
        theirs = KeyDirectory(there, PEPPER, ttl_s=TTL, clock=clock)
        key_id, full = await make_key(here, tenant=None)
        await mine.authenticate(full)
        await theirs.authenticate(full)
        await change_key(here, key_id, revoked_at=clock.time())
        mine.invalidate(Change("key", key_id))  # what the admin path does in its process
        assert await refused(mine.authenticate(full)) == "key_revoked"
        assert await refused(theirs.authenticate(full)) is None  # still within its TTL
        clock.advance(TTL)
        assert await refused(theirs.authenticate(full)) == "key_revoked"
    finally:
        await here.aclose()
        await there.aclose()


# -- replicas over Redis -------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> bool:
    """Poll ``predicate`` until it holds, for at most ``timeout_s`` (a bounded wait)."""
    for _ in range(int(timeout_s / 0.02)):
        if await predicate():
            return True
        await anyio.sleep(0.02)
    return await predicate()


@pytest.mark.anyio
async def test_a_revocation_reaches_every_replica_through_the_feed(
    redis_server: RedisServer, clock: ManualClock
) -> None:
    # The clock never moves: only the feed can make the second replica drop its entry.
    stores = [RedisKeyStore(url=redis_server.url, prefix="replicas") for _ in range(2)]
    directories = [KeyDirectory(s, PEPPER, ttl_s=TTL, clock=clock) for s in stores]
    async with anyio.create_task_group() as tasks:
        for directory in directories:
            tasks.start_soon(directory.run)

        async def pushed() -> bool:
            return all(d.pushed for d in directories)

        try:
            assert await eventually(pushed)
            assert directories[1].ttl_s == 60.0
            await stores[0].put_tenant(TenantRecord(name="acme"), create=True)
            key_id, full = await make_key(stores[0])
            for directory in directories:
                assert await refused(directory.authenticate(full)) is None

            await change_key(stores[0], key_id, revoked_at=clock.time())

            async def refused_by_the_other() -> bool:
                return await refused(directories[1].authenticate(full)) == "key_revoked"

            assert await eventually(refused_by_the_other, timeout_s=5)

            # A tenant's change reaches the other replica too.
            _, other = await make_key(stores[0])
            assert await refused(directories[1].authenticate(other)) is None
            await stores[0].put_tenant(TenantRecord(name="acme", blocked=True), create=False)

            async def tenant_refused() -> bool:
                return await refused(directories[1].authenticate(other)) == "tenant_blocked"

            assert await eventually(tenant_refused, timeout_s=5)
        finally:
            tasks.cancel_scope.cancel()
    for store in stores:
        await store.aclose()


@pytest.mark.anyio
async def test_the_directory_resubscribes_after_the_feed_drops(clock: ManualClock) -> None:
    server = RedisServer().start()
    store = RedisKeyStore(url=server.url, prefix="drops")
    directory = KeyDirectory(store, PEPPER, ttl_s=TTL, clock=clock)

    async def up() -> bool:
        return directory.pushed

    async def down() -> bool:
        return not directory.pushed

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(directory.run)
            try:
                assert await eventually(up)
                _key_id, full = await make_key(store, tenant=None)
                await directory.authenticate(full)
                server.stop()
                assert await eventually(down)
                assert directory.ttl_s == TTL  # back to the short TTL while deaf
                server.start()  # the same port, empty: the feed comes back
                assert await eventually(up, timeout_s=20)
                assert directory.stats.feed_errors >= 1
            finally:
                tasks.cancel_scope.cancel()
    finally:
        server.stop()
        await store.aclose()


# -- the pepper ----------------------------------------------------------------------------


def test_the_pepper_comes_from_the_environment_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PEPPER_ENV, "a-fleet-wide-pepper-value")
    assert load_pepper(str(tmp_path)) == b"a-fleet-wide-pepper-value"
    assert not (tmp_path / "key_pepper").exists()
    monkeypatch.setenv(PEPPER_ENV, "short")
    with pytest.raises(ValueError, match="at least 16"):
        load_pepper(str(tmp_path))


def test_without_the_variable_a_private_pepper_file_is_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(PEPPER_ENV, raising=False)
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="gateway.governance"):
        first = load_pepper(str(data_dir))
    assert PEPPER_ENV in caplog.text  # fleets are told to share one
    path = data_dir / "key_pepper"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 16
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.governance"):
        assert load_pepper(str(data_dir)) == first  # kept: keys made before still verify
    assert caplog.text == ""
    assert [p.name for p in data_dir.iterdir()] == ["key_pepper"]  # no temporary left
    path.write_text("tiny\n")
    with pytest.raises(ValueError, match="at least 16"):
        load_pepper(str(data_dir))
