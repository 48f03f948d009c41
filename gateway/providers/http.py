"""Relaying to an HTTP upstream over the gateway's pooled aiohttp session: what every HTTP
provider needs, so that a provider for an OpenAI-compatible server is a few lines.

Timeouts (from the backend's settings): ``connect`` for the TCP connection, ``first_byte`` until
the response headers, ``idle`` between two reads of the body or stream, ``total`` for the whole
exchange. Closing a stream early closes its connection, which cancels the request upstream.
Every failure becomes a ``gateway.errors`` upstream error, as the Provider contract requires.

Example, a complete provider::

    class MyProvider:
        def __init__(self, spec: BackendSpec, context: ProviderContext) -> None:
            self._relay = HttpRelay(context, spec.timeouts, bearer_headers(spec.api_key))
            self._base = f"{spec.url}/v1/"

        async def send(self, request: UpstreamRequest) -> UpstreamResponse:
            return await self._relay.send(self._base + request.endpoint.value, request)

        async def open_stream(self, request: UpstreamRequest) -> RelayedStream:
            return await self._relay.open_stream(self._base + request.endpoint.value, request)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
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
from gateway.providers.base import ProviderContext, UpstreamRequest, UpstreamResponse
from gateway.settings import TimeoutSettings

_decode = msgspec.json.Decoder()
PASSED_HEADERS = ("retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
"""Upstream response headers an error passes on to the client (rate-limit hints)."""


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def status_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamStatusError:
    """An :class:`UpstreamStatusError` carrying the upstream's own message, type, param and code.

    Understands OpenAI's envelope ``{"error": {...}}``, a flat ``{"object": "error", ...}`` and
    plain text; passes on the :data:`PASSED_HEADERS`.
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
    passed = {k: headers[k] for k in PASSED_HEADERS if k in headers}
    return UpstreamStatusError(
        status, message, error_type=error_type, param=param, code=code, headers=passed
    )


def map_client_error(exc: BaseException, url: str) -> UpstreamError:
    """An aiohttp failure (or timeout) talking to ``url`` as the gateway's upstream error.

    A refused connection is :class:`UpstreamConnectError`, which is safe to retry elsewhere.
    """
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"Could not connect to the upstream {url}: {exc.strerror}")
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeoutError(f"The upstream {url} did not answer in time.")
    return UpstreamConnectionError(f"The upstream {url} failed: {type(exc).__name__}: {exc}")


def bearer_headers(api_key: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """JSON request headers with ``authorization: Bearer <api_key>`` when there is a key."""
    headers = {"content-type": "application/json", **(extra or {})}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


class RelayedStream:
    """An open upstream response whose body is relayed chunk by chunk.

    Satisfies :class:`gateway.providers.UpstreamStream`.
    """

    __slots__ = ("_response", "_url")

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self._response = response
        self._url = url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_client_error(exc, self._url) from None

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # finished: the connection goes back to the pool
        else:
            self._response.close()  # unfinished: drop the connection, cancelling upstream


class HttpRelay:
    """POSTs request bodies as they are to URLs of one upstream, and relays the answers.

    Args:
        context: the providers' shared resources (the pooled session, used at call time).
        timeouts: the backend's effective timeouts.
        headers: sent with every request (``x-request-id`` and the request's own
            ``headers`` are added per request).
    """

    def __init__(
        self, context: ProviderContext, timeouts: TimeoutSettings, headers: Mapping[str, str]
    ) -> None:
        self._context = context
        self._headers = dict(headers)
        self._idle = timeouts.idle
        # aiohttp's read timeout runs from the moment the request is sent, so until the headers
        # arrive it is the first-byte timeout; then it becomes the idle one (see _post). One
        # timer instead of a per-request asyncio.timeout() around the call: cheaper per request.
        self._timeout = aiohttp.ClientTimeout(
            total=timeouts.total, sock_connect=timeouts.connect, sock_read=timeouts.first_byte
        )

    async def _post(self, url: str, request: UpstreamRequest) -> aiohttp.ClientResponse:
        headers = {**self._headers, "x-request-id": request.request_id}
        if request.headers:
            headers.update(request.headers)
        try:
            response = await self._context.http.post(
                url, data=request.body, headers=headers, timeout=self._timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_client_error(exc, url) from None
        connection = response.connection
        if connection is not None and connection.protocol is not None:
            connection.protocol.read_timeout = self._idle  # the body's reads: idle timeout
        return response

    @staticmethod
    def _idle_from_now(response: aiohttp.ClientResponse) -> None:
        """Restart the read timer with the idle timeout: a stream's first chunk may not wait
        for what is left of the first-byte timeout (a finished body needs no timer)."""
        connection = response.connection
        protocol = connection.protocol if connection is not None else None
        if protocol is not None and not response.content.at_eof():
            protocol.start_timeout()

    async def send(self, url: str, request: UpstreamRequest) -> UpstreamResponse:
        """POST ``request.body`` to ``url``; the whole successful answer.

        Raises:
            UpstreamError, UpstreamStatusError: as the Provider contract says.
        """
        response = await self._post(url, request)
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_client_error(exc, url) from None
        finally:
            response.release()
        if response.status >= 400:
            raise status_error(response.status, body, response.headers)
        return UpstreamResponse(response.status, body)

    async def open_stream(self, url: str, request: UpstreamRequest) -> RelayedStream:
        """POST ``request.body`` to ``url``; the open stream once the upstream answered success.

        Raises:
            UpstreamError, UpstreamStatusError: as the Provider contract says.
        """
        response = await self._post(url, request)
        if response.status >= 400:
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                response.release()
            raise status_error(response.status, body, response.headers)
        self._idle_from_now(response)
        return RelayedStream(response, url)
