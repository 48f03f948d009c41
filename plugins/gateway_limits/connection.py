"""The ``redis`` limiter's connection: one client (a Redis or a Redis Cluster), the scripts it
runs by SHA, and the checks of numeric options."""

from __future__ import annotations

import hashlib
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry


class Script:
    """A script's source and its SHA-1 (what EVALSHA names it by)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def connect(
    url: str, cluster: bool, timeout_s: float, max_connections: int
) -> aioredis.Redis | RedisCluster:
    """A client that fails fast (no retries: the limiter decides what a failure means) and
    sends nothing but the limiter's own calls (no HELLO, no CLIENT SETINFO per connection)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": True,
        "retry": Retry(NoBackoff(), 0),
        "driver_info": None,
        "protocol": 2,
    }
    if cluster:
        return RedisCluster.from_url(url, max_connections=max_connections, **options)
    # bounded: beyond max_connections a call waits for a connection rather than failing
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout_s, **options
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose closes it


def check_number(name: str, value: object, *, integer: bool = False) -> None:
    """Check a numeric option: a positive number, or an integer of at least 1.

    Raises:
        TypeError, ValueError: naming the option.
    """
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(
            f"`{name}` must be {'an integer' if integer else 'a number'}, got {value!r}"
        )
    if float(cast(float, value)) < (1 if integer else 0) or value == 0:
        raise ValueError(
            f"`{name}` must be {'at least 1' if integer else 'positive'}, got {value!r}"
        )
