"""The ``redis`` usage sink: one stream entry per record, for a fleet's control plane to fold
into its ledger.

Usage records go to the stream ``stream`` (default ``gw:usage``), audit records to
``<stream>:audit``; a batch is one pipeline of ``XADD``s (``MAXLEN ~ maxlen``: trimmed
approximately, so the stream's memory stays bounded). Every field is a string: integers and
floats in decimal, booleans ``1``/``0``, None the empty string, ``before``/``after`` JSON. The
consumer deduplicates by the ``request_id`` / ``audit_id`` field, since a batch retried after a
lost reply is added again. Connection errors raise, and the ledger retries the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from gateway.governance.sinks import AuditRecord, UsageRecord
from gateway_usage.encoding import audit_dict, usage_dict

_json = msgspec.json.Encoder()


def _field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        return _json.encode(value).decode()
    return str(value)


class RedisUsageSink:
    """Records appended to Redis streams.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        stream: the usage stream's key; audit records go to ``<stream>:audit``.
        maxlen: the approximate length each stream is trimmed to.
        timeout_s: the most one call to Redis may take.

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self, url: str, stream: str = "gw:usage", maxlen: int = 1_000_000, timeout_s: float = 5.0
    ) -> None:
        if not isinstance(url, str) or not url:
            raise TypeError(f"`url` must be a Redis URL, got {url!r}")
        if not isinstance(stream, str) or not stream:
            raise TypeError(f"`stream` must be a key name, got {stream!r}")
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise ValueError(f"`maxlen` must be a positive integer, got {maxlen!r}")
        if not isinstance(timeout_s, int | float) or timeout_s <= 0:
            raise ValueError(f"`timeout_s` must be a positive number, got {timeout_s!r}")
        self.stream = stream
        self.audit_stream = f"{stream}:audit"
        self.maxlen = maxlen
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    async def _add(self, stream: str, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        pipe = self._redis.pipeline(transaction=False)
        for entry in entries:
            fields: dict[Any, Any] = {k: _field(v) for k, v in entry.items()}
            pipe.xadd(stream, fields, maxlen=self.maxlen, approximate=True)
        await pipe.execute()

    async def write(self, records: Sequence[UsageRecord]) -> None:
        await self._add(self.stream, [usage_dict(r) for r in records])

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        await self._add(self.audit_stream, [audit_dict(r) for r in records])

    async def aclose(self) -> None:
        await self._redis.aclose()
