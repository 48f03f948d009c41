"""Relay OpenAI-format requests to an OpenAI-compatible server over pooled aiohttp connections.

Timeouts (from the backend's settings): ``connect`` for the TCP connection, ``first_byte`` until the
response headers, ``idle`` between two reads of the body or stream, ``total`` for the whole
exchange. Closing a stream early closes its connection, which cancels the request upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec

from gateway.errors import (
    UpstreamConnectError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway.providers.base import (
    OPENAI_ENDPOINTS,
    BackendSpec,
    Endpoint,
    ProviderContext,
    UpstreamRequest,
    UpstreamResponse,
)

_decode = msgspec.json.Decoder()
_PASSED_HEADERS = ("retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def status_error(status: int, body: bytes, headers: Any) -> UpstreamStatusError:
    """An :class:`UpstreamStatusError` carrying the upstream's own message, type, param and code.

    Understands OpenAI's envelope, vLLM's flat ``{"object": "error", ...}`` and plain text.
    """
    message, error_type, param, code = "", None, None, None
    try:
        data = _decode.decode(body)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        nested = data.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else data
        message = str(inner.get("message") or "")
        error_type = _str_or_none(inner.get("type"))
        param = _str_or_none(inner.get("param"))
        code = None if inner.get("code") is None else str(inner["code"])
    if not message:
        text = body[:500].decode("utf-8", "replace").strip()
        message = text or f"The upstream answered with status {status}."
    passed = {k: headers[k] for k in _PASSED_HEADERS if k in headers}
    return UpstreamStatusError(
        status, message, error_type=error_type, param=param, code=code, headers=passed
    )


def _map_client_error(exc: BaseException, url: str) -> UpstreamError:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"Could not connect to the upstream {url}: {exc.strerror}")
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeoutError(f"The upstream {url} did not answer in time.")
    return UpstreamConnectionError(f"The upstream {url} failed: {type(exc).__name__}: {exc}")


class _RelayedStream:
    """An open upstream response whose body is relayed chunk by chunk."""

    __slots__ = ("_response", "_url")

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self._response = response
        self._url = url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _map_client_error(exc, self._url) from None

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # finished: the connection goes back to the pool
        else:
            self._response.close()  # unfinished: drop the connection, cancelling upstream


class OpenAICompatibleProvider:
    """A :class:`gateway.providers.Provider` for one OpenAI-compatible backend."""

    def __init__(self, spec: BackendSpec, context: ProviderContext) -> None:
        if not spec.url:
            raise ValueError("`url` is required for an OpenAI-compatible backend")
        unknown = set(spec.options) - {"headers", "messages"}
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; known: ['headers', 'messages']")
        # Newer vLLM versions also serve Anthropic's /v1/messages: relay it untranslated.
        self.endpoints = OPENAI_ENDPOINTS | (
            {Endpoint.MESSAGES} if spec.options.get("messages") else set()
        )
        self._context = context
        self._urls = {e: f"{spec.url}/v1/{e.value}" for e in Endpoint}
        self._health_url = f"{spec.url}/health"
        self._headers: dict[str, str] = {
            "content-type": "application/json",
            **spec.options.get("headers", {}),
        }
        if spec.api_key:
            self._headers["authorization"] = f"Bearer {spec.api_key}"
        t = spec.timeouts
        self._first_byte = t.first_byte
        self._timeout = aiohttp.ClientTimeout(
            total=t.total, sock_connect=t.connect, sock_read=t.idle
        )

    async def _post(self, request: UpstreamRequest) -> tuple[aiohttp.ClientResponse, str]:
        url = self._urls[request.endpoint]
        headers = {**self._headers, "x-request-id": request.request_id}
        try:
            async with asyncio.timeout(self._first_byte):
                response = await self._context.http.post(
                    url, data=request.body, headers=headers, timeout=self._timeout
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _map_client_error(exc, url) from None
        return response, url

    async def health(self) -> bool:
        """``GET /health``: healthy when it answers below 500 (the caller bounds the time).

        vLLM answers 200, or 503 once its engine is dead. A server with no health route answers
        404, which still proves it is up: taking it out of routing would black-hole traffic.
        """
        try:
            async with self._context.http.get(self._health_url) as response:
                return response.status < 500
        except (aiohttp.ClientError, OSError):
            return False

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        response, url = await self._post(request)
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _map_client_error(exc, url) from None
        finally:
            response.release()
        if response.status >= 400:
            raise status_error(response.status, body, response.headers)
        return UpstreamResponse(response.status, body)

    async def open_stream(self, request: UpstreamRequest) -> _RelayedStream:
        response, url = await self._post(request)
        if response.status >= 400:
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                response.release()
            raise status_error(response.status, body, response.headers)
        return _RelayedStream(response, url)
