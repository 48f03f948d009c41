"""The ``redis`` control store: the config versions, health hints and job state a fleet shares.

Keys (the config's two share the hash tag ``{config}``, so a Redis Cluster keeps them in one
slot and one script touches both):

- ``<prefix>{config}:current``: the current version's number, the counter publication
  increments: what replicas poll, one GET;
- ``<prefix>{config}:versions``: a hash of version number to its JSON record;
- ``<prefix>health``: the last sweep's hints, one JSON value;
- ``<prefix>state:<name>``: a job's state, one JSON value;
- ``<prefix>{dashboard}:replicas`` and ``<prefix>{dashboard}:r:<replica>``: the dashboard's
  snapshots (:class:`gateway.dashboard.fleet.SharesSnapshots`), one key per replica that
  expires with its TTL, and the set of replicas that published (pruned by the reader).

Publication is one script: increment the counter, store the record under the new number, and
forget versions older than the newest ``keep_versions``; so two publishers never get the same
number and a replica never sees a number whose record is not there yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.control.base import ConfigVersion, HealthHint
from gateway.errors import ServiceUnavailableError
from gateway_control.encoding import (
    VersionRecord,
    check_keep_versions,
    decode_hints,
    decode_record,
    decode_state,
    digest_of,
    encode_hints,
    encode_record,
    encode_state,
)

T = TypeVar("T")

# KEYS: current, versions. ARGV: the record's JSON, keep_versions.
# Returns the new version. Older versions are forgotten down to the first one already gone.
_PUBLISH = """
local version = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], version, ARGV[1])
local old = version - tonumber(ARGV[2])
while old > 0 and redis.call('HDEL', KEYS[2], old) == 1 do old = old - 1 end
return version
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisControlStore:
    """The control store in one Redis database (or Cluster-compatible keys).

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        prefix: prepended to every key.
        timeout_s: the most one call to Redis may take.
        keep_versions: how many of the newest config versions are kept (rollback reaches them).

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "gateway:control:",
        timeout_s: float = 2.0,
        keep_versions: int = 50,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"`url` must be a redis:// URL, got `{url}`")
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string, got {prefix!r}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise TypeError(f"`timeout_s` must be a number, got {timeout_s!r}")
        if timeout_s <= 0:
            raise ValueError(f"`timeout_s` must be positive, got {timeout_s!r}")
        self.prefix = prefix
        self.timeout_s = float(timeout_s)
        self.keep_versions = check_keep_versions(keep_versions)
        self._current = f"{prefix}{{config}}:current"
        self._versions = f"{prefix}{{config}}:versions"
        self._health = f"{prefix}health"
        self._dashboard = f"{prefix}{{dashboard}}"
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            retry_on_timeout=False,
        )
        self._publish = self._client.register_script(_PUBLISH)

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call()
        except (RedisError, OSError, TimeoutError) as exc:
            raise ServiceUnavailableError(
                f"the control store failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _state_key(self, name: str) -> str:
        return f"{self.prefix}state:{name}"

    # -- config versions -----------------------------------------------------------------------

    async def publish_config(self, text: str, source: str) -> ConfigVersion:
        record = VersionRecord(text, source, time.time(), digest_of(text))
        version = int(
            await self._call(
                lambda: self._publish(
                    keys=[self._current, self._versions],
                    args=[encode_record(record), self.keep_versions],
                )
            )
        )
        return record.at(version)

    async def current_version(self) -> int:
        raw = await self._call(lambda: self._client.get(self._current))
        return int(raw) if raw is not None else 0

    async def current_config(self) -> ConfigVersion | None:
        version = await self.current_version()
        return await self.config_version(version) if version else None

    async def config_version(self, version: int) -> ConfigVersion | None:
        raw = await self._call(lambda: self._client.hget(self._versions, str(version)))
        return None if raw is None else decode_record(raw).at(version)

    async def config_versions(self, limit: int = 20) -> list[ConfigVersion]:
        newest = await self.current_version()
        numbers = [str(v) for v in range(newest, max(newest - limit, 0), -1)]
        if not numbers:
            return []
        raws = await self._call(lambda: self._client.hmget(self._versions, numbers))
        return [
            decode_record(raw).at(int(number))
            for number, raw in zip(numbers, raws, strict=True)
            if raw is not None
        ]

    # -- health hints and job state ------------------------------------------------------------

    async def put_health(self, hints: Sequence[HealthHint]) -> None:
        data = encode_hints(hints)
        await self._call(lambda: self._client.set(self._health, data))

    async def health(self) -> list[HealthHint]:
        raw = await self._call(lambda: self._client.get(self._health))
        return [] if raw is None else decode_hints(raw)

    async def get_state(self, name: str) -> Mapping[str, Any]:
        raw = await self._call(lambda: self._client.get(self._state_key(name)))
        return {} if raw is None else decode_state(raw)

    async def put_state(self, name: str, state: Mapping[str, Any]) -> None:
        data = encode_state(state)
        await self._call(lambda: self._client.set(self._state_key(name), data))

    # -- dashboard snapshots ---------------------------------------------------------------------

    async def put_snapshot(self, replica: str, data: bytes, ttl_s: float) -> None:
        key = f"{self._dashboard}:r:{replica}"
        ttl_ms = max(1, round(ttl_s * 1000))

        async def put() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(key, data, px=ttl_ms)
                pipe.sadd(f"{self._dashboard}:replicas", replica)
                await pipe.execute()

        await self._call(put)

    async def snapshots(self) -> list[bytes]:
        replicas_key = f"{self._dashboard}:replicas"
        members: set[bytes | str] = await self._call(lambda: self._client.smembers(replicas_key))
        names = sorted(_text(n) for n in members)
        if not names:
            return []
        keys = [f"{self._dashboard}:r:{n}" for n in names]
        values: list[bytes | str | None] = await self._call(lambda: self._client.mget(keys))
        gone = [n for n, v in zip(names, values, strict=True) if v is None]
        if gone:
            await self._call(lambda: self._client.srem(replicas_key, *gone))
        return [v.encode() if isinstance(v, str) else v for v in values if v is not None]

    async def aclose(self) -> None:
        await self._client.aclose()
