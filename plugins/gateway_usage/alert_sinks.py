"""The built-in alert sinks: ``log``, ``webhook`` and ``redis``.

Each delivers one budget alert (:class:`~gateway.governance.limiter.Alert`) as the JSON of
:func:`gateway_usage.encoding.alert_payload`: ``{"type": "budget_alert", "scope", "window",
"threshold", "spent_usd", "limit_usd", "tenant", "key_id", "at", ...}``. A failed delivery
raises; the dispatcher logs it and the others still go out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis

from gateway.governance.limiter import Alert
from gateway_usage.encoding import alert_payload

log = logging.getLogger("gateway.alerts")
_json = msgspec.json.Encoder()


class LogAlertSink:
    """A WARNING line on the ``gateway.alerts`` logger per alert."""

    async def send(self, alert: Alert, context: dict[str, Any]) -> None:
        p = alert_payload(alert, context, time.time())
        log.warning(
            "budget alert: %s reached %g%% of its %s budget (window %s): $%.6f of $%.6f",
            p["scope"],
            alert.threshold * 100,
            p["window"],
            p["window_id"],
            p["spent_usd"],
            p["limit_usd"],
        )

    async def aclose(self) -> None:
        """Nothing to release."""


class WebhookAlertSink:
    """POSTs each alert as JSON to ``url``.

    Args:
        url: the endpoint (``http://`` or ``https://``).
        timeout_s: the most one delivery may take.
        headers: extra request headers (a shared secret, for example).

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self, url: str, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"`url` must be an http(s) URL, got {url!r}")
        if not isinstance(timeout_s, int | float) or timeout_s <= 0:
            raise ValueError(f"`timeout_s` must be a positive number, got {timeout_s!r}")
        if headers is not None and not (
            isinstance(headers, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise TypeError("`headers` must map header names to strings")
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.headers = {"content-type": "application/json", **(headers or {})}
        self._session: aiohttp.ClientSession | None = None

    async def send(self, alert: Alert, context: dict[str, Any]) -> None:
        if self._session is None or self._session.closed:
            # Created here, inside the running loop (the factory runs before it exists).
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = _json.encode(alert_payload(alert, context, time.time()))
        async with self._session.post(self.url, data=body, headers=self.headers) as resp:
            if resp.status >= 400:
                raise RuntimeError(f"webhook {self.url} answered {resp.status}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class RedisAlertSink:
    """PUBLISHes each alert's JSON on a Redis channel.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        channel: the channel (default ``gw:alerts``).
        timeout_s: the most one call to Redis may take.

    Raises:
        TypeError: bad options.
    """

    def __init__(self, url: str, channel: str = "gw:alerts", timeout_s: float = 5.0) -> None:
        if not isinstance(url, str) or not url:
            raise TypeError(f"`url` must be a Redis URL, got {url!r}")
        if not isinstance(channel, str) or not channel:
            raise TypeError(f"`channel` must be a channel name, got {channel!r}")
        self.channel = channel
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    async def send(self, alert: Alert, context: dict[str, Any]) -> None:
        await self._redis.publish(
            self.channel, _json.encode(alert_payload(alert, context, time.time()))
        )

    async def aclose(self) -> None:
        await self._redis.aclose()
