"""The ``redis`` key store: virtual keys and tenants shared by every replica of a fleet.

Layout (``<p>`` is ``prefix``, or ``{prefix}`` in cluster mode so that every key sits in one
slot and a script may touch several):

- ``<p>:key:<id>``, ``<p>:tenant:<name>``: a record as JSON;
- ``<p>:keys``: every key id, a sorted set by ``created_at`` (ties by id: Redis orders equal
  scores by member);
- ``<p>:tenant-keys:<name>``: a tenant's key ids, the same way;
- ``<p>:tenants``: every tenant name (score 0, so in name order).

Every write is one script: the existence check (create or update), the record, its indexes and a
``PUBLISH`` on ``<p>:keys:changes`` (``key:<id>`` or ``tenant:<name>``) happen at once, so a
subscriber never hears of a write that did not happen, nor misses one that did. :meth:`changes`
is that subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.governance.keystore import Change, ConflictError, KeyStoreUnavailableError
from gateway.governance.records import KeyRecord, TenantRecord
from gateway_keys.codec import decode_key, decode_tenant, encode

T = TypeVar("T")

# KEYS: the record, every key's index. ARGV: json, created_at, id, create ('1'/'0'), tenant
# ('' for none), the tenant indexes' prefix, channel, payload. The tenant indexes are named from
# ARGV because the old tenant is only known from the old record; in cluster mode they share the
# hash tag of KEYS, so they sit in the same slot.
_PUT_KEY = """
local old = redis.call('GET', KEYS[1])
if ARGV[4] == '1' then
  if old then return 'conflict' end
elseif not old then
  return 'missing'
end
if old then
  local was = cjson.decode(old).tenant
  if type(was) == 'string' and was ~= ARGV[5] then
    redis.call('ZREM', ARGV[6] .. was, ARGV[3])
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
if ARGV[5] ~= '' then redis.call('ZADD', ARGV[6] .. ARGV[5], ARGV[2], ARGV[3]) end
redis.call('PUBLISH', ARGV[7], ARGV[8])
return 'ok'
"""

# KEYS: the record, the tenants index. ARGV: json, create, name, channel, payload.
_PUT_TENANT = """
local exists = redis.call('EXISTS', KEYS[1])
if ARGV[2] == '1' then
  if exists == 1 then return 'conflict' end
elseif exists == 0 then
  return 'missing'
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 'ok'
"""

# KEYS: the record, the tenants index, the tenant's key index. ARGV: name, channel, payload.
_DELETE_TENANT = """
if redis.call('ZCARD', KEYS[3]) > 0 then return 'conflict' end
if redis.call('DEL', KEYS[1]) == 0 then return 'missing' end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 'ok'
"""

_POLL_S = 1.0  # how often an idle subscription checks whether the store was closed


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisKeyStore:
    """Keys and tenants under ``prefix`` in Redis (or Redis Cluster).

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL (a seed node in cluster mode).
        prefix: the start of every key and of the change channel.
        cluster: connect to a Redis Cluster.
        timeout_ms: the most one call to Redis may take.
        clock: the gateway's clock (unused: records carry their own times).
        pepper: unused (records hold hashes already).

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self,
        url: str | None = None,
        prefix: str = "gw",
        cluster: bool = False,
        timeout_ms: float = 1000.0,
        *,
        clock: Clock = SYSTEM_CLOCK,
        pepper: bytes = b"",
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"`url` must be a redis:// URL, got {url!r}")
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"`prefix` must be a non-empty string, got {prefix!r}")
        if not isinstance(cluster, bool):
            raise TypeError(f"`cluster` must be true or false, got {cluster!r}")
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float):
            raise TypeError(f"`timeout_ms` must be a number, got {timeout_ms!r}")
        if timeout_ms <= 0:
            raise ValueError(f"`timeout_ms` must be positive, got {timeout_ms!r}")
        self.url = url
        self.timeout_s = timeout_ms / 1000
        self.base = f"{{{prefix}}}" if cluster else prefix
        self.channel = f"{self.base}:keys:changes"
        self._closed = False
        self._client: Any
        options: dict[str, Any] = {
            "socket_timeout": self.timeout_s,
            "socket_connect_timeout": self.timeout_s,
            "retry": Retry(NoBackoff(), 1),  # one quick reconnect; the call's timeout bounds it
        }
        if cluster:
            self._client = aioredis.RedisCluster.from_url(url, **options)
        else:
            self._client = aioredis.Redis.from_url(url, retry_on_timeout=False, **options)
        self._put_key = self._client.register_script(_PUT_KEY)
        self._put_tenant = self._client.register_script(_PUT_TENANT)
        self._delete_tenant = self._client.register_script(_DELETE_TENANT)

    @property
    def writable(self) -> bool:
        return True

    # -- keys and plumbing ---------------------------------------------------------------------

    def _key(self, key_id: str) -> str:
        return f"{self.base}:key:{key_id}"

    def _tenant(self, name: str) -> str:
        return f"{self.base}:tenant:{name}"

    @property
    def _keys_index(self) -> str:
        return f"{self.base}:keys"

    def _tenant_keys(self, name: str) -> str:
        return f"{self.base}:tenant-keys:{name}"

    @property
    def _tenants_index(self) -> str:
        return f"{self.base}:tenants"

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        if self._closed:
            raise KeyStoreUnavailableError("the key store is closed")
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call()
        except (RedisError, OSError, TimeoutError) as exc:
            raise KeyStoreUnavailableError(
                f"the key store failed: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _outcome(result: object, what: str, name: str) -> None:
        outcome = _text(result)
        if outcome == "conflict":
            raise ConflictError(f"{what} `{name}` exists" if what else name)
        if outcome == "missing":
            raise KeyError(name)

    # -- reads ---------------------------------------------------------------------------------

    async def get_key(self, key_id: str) -> KeyRecord | None:
        raw = await self._call(lambda: self._client.get(self._key(key_id)))
        return None if raw is None else decode_key(raw)

    async def get_tenant(self, name: str) -> TenantRecord | None:
        raw = await self._call(lambda: self._client.get(self._tenant(name)))
        return None if raw is None else decode_tenant(raw)

    async def _members(self, index: str) -> list[str]:
        raw = await self._call(lambda: self._client.zrange(index, 0, -1))
        return [_text(member) for member in raw]

    async def _values(self, keys: list[str]) -> list[bytes]:
        if not keys:
            return []
        raw = await self._call(lambda: self._client.mget(keys))
        return [value for value in raw if value is not None]  # deleted in between: skipped

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        ids = await self._members(self._keys_index if tenant is None else self._tenant_keys(tenant))
        records = [decode_key(raw) for raw in await self._values([self._key(i) for i in ids])]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    async def list_tenants(self) -> list[TenantRecord]:
        names = await self._members(self._tenants_index)
        records = [decode_tenant(r) for r in await self._values([self._tenant(n) for n in names])]
        return sorted(records, key=lambda r: r.name)

    # -- writes: one script each ---------------------------------------------------------------

    async def put_key(self, record: KeyRecord, *, create: bool) -> None:
        keys = [self._key(record.id), self._keys_index]
        args = [
            encode(record),
            repr(record.created_at),
            record.id,
            "1" if create else "0",
            record.tenant or "",
            self._tenant_keys(""),
            self.channel,
            f"key:{record.id}",
        ]
        result = await self._call(lambda: self._put_key(keys=keys, args=args))
        self._outcome(result, "a key with id", record.id)

    async def put_tenant(self, record: TenantRecord, *, create: bool) -> None:
        keys = [self._tenant(record.name), self._tenants_index]
        args = [
            encode(record),
            "1" if create else "0",
            record.name,
            self.channel,
            f"tenant:{record.name}",
        ]
        result = await self._call(lambda: self._put_tenant(keys=keys, args=args))
        self._outcome(result, "a tenant named", record.name)

    async def delete_tenant(self, name: str) -> None:
        keys = [self._tenant(name), self._tenants_index, self._tenant_keys(name)]
        args = [name, self.channel, f"tenant:{name}"]
        result = await self._call(lambda: self._delete_tenant(keys=keys, args=args))
        self._outcome(result, "", f"the tenant `{name}` still has keys")

    # -- the change feed -----------------------------------------------------------------------

    def changes(self) -> AsyncIterator[Change] | None:
        return self._changes()

    async def _changes(self) -> AsyncIterator[Change]:
        # A connection of its own, without a read timeout: a subscription is idle by nature.
        # (In cluster mode, one node's subscription hears every node's PUBLISH.) No silent
        # reconnects: changes published while it was down would be lost unnoticed, so a drop
        # raises and the caller subscribes again (and drops its cache).
        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.timeout_s,
            health_check_interval=5,
            retry=Retry(NoBackoff(), 0),
        )
        pubsub = client.pubsub()
        try:
            try:
                async with asyncio.timeout(self.timeout_s * 5):
                    await pubsub.subscribe(self.channel)
                    while await pubsub.get_message(timeout=self.timeout_s) is None:
                        pass  # the subscription's confirmation comes first
            except (RedisError, OSError, TimeoutError) as exc:
                raise KeyStoreUnavailableError(f"the key store's feed failed: {exc}") from exc
            yield Change("all", "")  # subscribed: from here on no change is missed
            while not self._closed:
                try:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=_POLL_S
                    )
                except (RedisError, OSError) as exc:
                    raise KeyStoreUnavailableError(f"the key store's feed failed: {exc}") from exc
                if message is None or message.get("type") != "message":
                    continue
                kind, _, name = _text(message.get("data", b"")).partition(":")
                if kind == "key":
                    yield Change("key", name)
                elif kind == "tenant":
                    yield Change("tenant", name)
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()
            except (RedisError, OSError):
                pass  # the connection is gone already

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()
