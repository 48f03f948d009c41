"""The ``redis`` response store: stored responses and chat completions shared by a fleet.

Per namespace (all its keys share the hash tag ``{namespace}``, so they sit in one slot of a
Redis Cluster and a script may touch them together):

- ``<prefix>{<ns>}:o:<id>``: the record and its expiry, one JSON value with Redis's own expiry;
- ``<prefix>{<ns>}:i:<kind>``: a sorted set of ids by ``created_at``, for listing;
- ``<prefix>{<ns>}:x``: a sorted set of ids by expiry, from which each write sweeps a bounded
  batch of expired ids out of the listings.

Expiry is checked on the injected clock when reading (so tests move time) and left to Redis's
key expiry for reclaiming memory. A write is one round trip (a script), a read one, a page of a
listing two (its ids, then their values).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.stores.base import (
    DEFAULT_TTL_S,
    KINDS,
    Kind,
    Order,
    StoredObject,
    StoredPage,
    StoreUnavailableError,
    check_list_args,
    check_record,
    check_ttl,
)

T = TypeVar("T")
_Ids = list[str]  # (the class's `list` method hides the builtin in its body's annotations)


class _Envelope(msgspec.Struct, array_like=True):
    expires_at: float
    record: StoredObject


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Envelope).decode

# KEYS: the object, its kind's listing, the expiry set, the other kinds' listings.
# ARGV: value, ttl_ms, created_at, expires_at, id, now, sweep_limit.
_PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
for i = 4, #KEYS do redis.call('ZREM', KEYS[i], ARGV[5]) end
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[6], 'LIMIT', 0, ARGV[7])
if #dead > 0 then
  for i = 2, #KEYS do redis.call('ZREM', KEYS[i], unpack(dead)) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return #dead
"""

# KEYS: a listing. ARGV: after ('' for the start), 'asc' or 'desc', count.
_PAGE_IDS = """
local start = 0
if ARGV[1] ~= '' then
  local rank
  if ARGV[2] == 'asc' then
    rank = redis.call('ZRANK', KEYS[1], ARGV[1])
  else
    rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
  end
  if not rank then return {} end
  start = rank + 1
end
local stop = start + tonumber(ARGV[3]) - 1
if ARGV[2] == 'asc' then return redis.call('ZRANGE', KEYS[1], start, stop) end
return redis.call('ZREVRANGE', KEYS[1], start, stop)
"""


# KEYS: the expiry set, the listings (ARGV[2] of them), then the objects of ARGV[3...].
# ARGV: now, the number of listings, the ids. Only ids still dead are unlisted: an object put
# again since the listing read it stays. (An envelope is `[expires_at,{record}]`.)
_UNLIST_DEAD = """
local listings = tonumber(ARGV[2])
for i = 3, #ARGV do
  local value = redis.call('GET', KEYS[listings + i - 1])
  local expires_at = value and tonumber(string.match(value, '^%[([^,]+),'))
  if not value or (expires_at and expires_at <= tonumber(ARGV[1])) then
    for k = 1, listings + 1 do redis.call('ZREM', KEYS[k], ARGV[i]) end
  end
end
"""


class RedisResponseStore:
    """Stored objects under ``prefix`` in one Redis database.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        prefix: prepended to every key.
        ttl_s: retention in seconds from the last write (default 30 days).
        timeout_ms: the most one call to Redis may take.
        sweep_limit: most expired ids removed from the listings per write.
        clock: the gateway's clock (expiry).

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "gateway:store:",
        ttl_s: float = DEFAULT_TTL_S,
        timeout_ms: float = 1000.0,
        sweep_limit: int = 100,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"`url` must be a redis:// URL, got `{url}`")
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string, got {prefix!r}")
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float):
            raise TypeError(f"`timeout_ms` must be a number, got {timeout_ms!r}")
        if timeout_ms <= 0:
            raise ValueError(f"`timeout_ms` must be positive, got {timeout_ms!r}")
        if isinstance(sweep_limit, bool) or not isinstance(sweep_limit, int) or sweep_limit < 0:
            raise ValueError(f"`sweep_limit` must be a non-negative integer, got {sweep_limit!r}")
        self.prefix = prefix
        self.ttl_s = check_ttl(ttl_s)
        self.timeout_s = timeout_ms / 1000
        self.sweep_limit = sweep_limit
        self._clock = clock
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            retry_on_timeout=False,
        )
        self._put = self._client.register_script(_PUT)
        self._page_ids = self._client.register_script(_PAGE_IDS)
        self._unlist_dead = self._client.register_script(_UNLIST_DEAD)

    # -- keys and plumbing ---------------------------------------------------------------------

    def _base(self, namespace: str) -> str:
        return f"{self.prefix}{{{namespace}}}:"

    def _object(self, namespace: str, id: str) -> str:
        return f"{self._base(namespace)}o:{id}"

    def _listing(self, namespace: str, kind: str) -> str:
        return f"{self._base(namespace)}i:{kind}"

    def _expiry(self, namespace: str) -> str:
        return f"{self._base(namespace)}x"

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call()
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(
                f"the response store failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _live(self, raw: object) -> _Envelope | None:
        if not isinstance(raw, bytes | str):
            return None
        try:
            envelope = _decode(raw)
        except msgspec.DecodeError as exc:
            raise StoreUnavailableError(
                f"the response store holds a corrupt record: {exc}"
            ) from exc
        return envelope if envelope.expires_at > self._clock.time() else None

    # -- the contract --------------------------------------------------------------------------

    async def put(self, namespace: str, record: StoredObject) -> None:
        check_record(record)
        now = self._clock.time()
        expires_at = now + self.ttl_s
        keys = [
            self._object(namespace, record.id),
            self._listing(namespace, record.kind),
            self._expiry(namespace),
            *(self._listing(namespace, k) for k in KINDS if k != record.kind),
        ]
        args: list[Any] = [
            _encode(_Envelope(expires_at, record)),
            max(int(self.ttl_s * 1000), 1),
            repr(record.created_at),
            repr(expires_at),
            record.id,
            repr(now),
            self.sweep_limit,
        ]
        await self._call(lambda: self._put(keys=keys, args=args))

    async def get(self, namespace: str, id: str) -> StoredObject | None:
        raw = await self._call(lambda: self._client.get(self._object(namespace, id)))
        envelope = self._live(raw)
        return None if envelope is None else envelope.record

    async def delete(self, namespace: str, id: str) -> bool:
        async def call() -> list[Any]:
            pipe = self._client.pipeline(transaction=True)
            key = self._object(namespace, id)
            pipe.get(key)
            pipe.delete(key)
            pipe.zrem(self._expiry(namespace), id)
            for kind in KINDS:
                pipe.zrem(self._listing(namespace, kind), id)
            return list(await pipe.execute())

        results = await self._call(call)
        return self._live(results[0]) is not None

    async def list(
        self,
        namespace: str,
        kind: Kind,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
        metadata: Mapping[str, str] | None = None,
        model: str | None = None,
    ) -> StoredPage:
        check_list_args(limit, order)
        listing = self._listing(namespace, kind)
        filtered = bool(metadata) or model is not None
        batch = max(4 * (limit + 1), 100) if filtered else limit + 1
        found: list[StoredObject] = []
        gone: list[str] = []
        cursor = after or ""
        while len(found) <= limit:
            ids = await self._page_ids_of(listing, cursor, order, batch)
            if not ids:
                break
            keys = [self._object(namespace, i) for i in ids]
            raws = await self._call(partial(self._mget, keys))
            for id, raw in zip(ids, raws, strict=True):
                envelope = self._live(raw)
                if envelope is None:
                    gone.append(id)
                elif envelope.record.matches(metadata, model):
                    found.append(envelope.record)
            if len(ids) < batch:
                break
            cursor = ids[-1]
        if gone:  # expired or lost values: out of the listing (their expiry entries too)
            await self._call(lambda: self._unlist(namespace, gone))
        return StoredPage(tuple(found[:limit]), len(found) > limit)

    async def _page_ids_of(self, listing: str, cursor: str, order: str, count: int) -> _Ids:
        raw = await self._call(lambda: self._page_ids(keys=[listing], args=[cursor, order, count]))
        return [i.decode() if isinstance(i, bytes) else str(i) for i in raw]

    async def _mget(self, keys: Sequence[str]) -> Sequence[object]:
        return list(await self._client.mget(keys))

    async def _unlist(self, namespace: str, ids: Sequence[str]) -> None:
        keys = [
            self._expiry(namespace),
            *(self._listing(namespace, kind) for kind in KINDS),
            *(self._object(namespace, id) for id in ids),
        ]
        await self._unlist_dead(keys=keys, args=[repr(self._clock.time()), len(KINDS), *ids])

    async def update_metadata(
        self, namespace: str, id: str, metadata: Mapping[str, str]
    ) -> StoredObject | None:
        key = self._object(namespace, id)

        async def call() -> StoredObject | None:
            for _ in range(5):  # optimistic: retried when a write comes in between
                async with self._client.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(key)
                        envelope = self._live(await pipe.get(key))
                        if envelope is None:
                            return None
                        record = envelope.record.with_metadata(metadata)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(key, _encode(_Envelope(envelope.expires_at, record)), keepttl=True)
                        await pipe.execute()
                        return record
                    except WatchError:
                        continue
            raise StoreUnavailableError(f"the stored object `{id}` kept changing; try again")

        return await self._call(call)

    async def aclose(self) -> None:
        await self._client.aclose()
