"""Plumbing shared by providers built on vendors' official Python SDKs that come from one code
generator (and so share their shapes): raw responses, error mapping and held-open streams.

Nothing here imports a vendor SDK; objects are used through the attributes those SDKs share.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from gateway.errors import (
    GatewayError,
    UpstreamConnectError,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway.providers.base import BackendSpec, UpstreamRequest
from gateway.providers.http import PASSED_HEADERS

_REFUSED = ("ConnectError", "ClientConnectorError", "ConnectionRefusedError", "gaierror")


class RawResponse(Protocol):
    """The SDKs' streaming raw response (``AsyncAPIResponse``)."""

    async def read(self) -> bytes: ...

    def iter_bytes(self) -> AsyncIterator[bytes]: ...


class StreamRewriter(Protocol):
    """Optional rewriting of a stream's bytes (another API's events to OpenAI's)."""

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


TRANSPORTS = ("aiohttp", "httpx")


def check_sdk_options(spec: BackendSpec, known: set[str], key_env: str) -> str:
    """Validate an SDK backend's options and key; returns the chosen transport.

    Raises:
        ValueError: an unknown option, no API key, or an unknown transport.
    """
    unknown = set(spec.options) - known
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
    if not spec.api_key:
        raise ValueError(f"`api_key` is required (use ${{{key_env}}})")
    transport = str(spec.options.get("transport", "aiohttp"))
    if transport not in TRANSPORTS:
        raise ValueError("`options.transport` must be `aiohttp` or `httpx`")
    return transport


def split_sdk_params(body: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """SDK keyword arguments: known parameters by name, the rest through ``extra_body``."""
    params = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    if extra:
        params["extra_body"] = extra
    return params


def request_headers(request: UpstreamRequest) -> dict[str, str]:
    """The per-request headers an SDK call sends (its ``extra_headers``): the request's own
    (the trace context) and its ``x-request-id``."""
    return {**(request.headers or {}), "x-request-id": request.request_id}


def _caused_by_refusal(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if type(seen).__name__ in _REFUSED or isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def map_sdk_error(exc: Exception, where: str) -> GatewayError:
    """A vendor SDK's exception as the gateway's upstream error.

    ``APIStatusError`` (``status_code``, ``body``, ``response``) keeps the upstream's status,
    message, type and rate-limit headers; timeouts become 504; a refused connection becomes
    :class:`UpstreamConnectError` (safe to retry elsewhere); other connection failures 502.
    """
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        body = getattr(exc, "body", None)
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else (body if isinstance(body, dict) else {})
        message = str(error.get("message") or getattr(exc, "message", "") or exc)
        headers = getattr(getattr(exc, "response", None), "headers", {}) or {}
        passed = {k: headers[k] for k in PASSED_HEADERS if k in headers}
        code = error.get("code")
        return UpstreamStatusError(
            status,
            message,
            error_type=error.get("type") if isinstance(error.get("type"), str) else None,
            param=error.get("param") if isinstance(error.get("param"), str) else None,
            code=None if code is None else str(code),
            headers=passed,
        )
    if "Timeout" in type(exc).__name__ or isinstance(exc, TimeoutError):
        return UpstreamTimeoutError(f"The upstream {where} did not answer in time.")
    if _caused_by_refusal(exc):
        return UpstreamConnectError(f"Could not connect to the upstream {where}.")
    return UpstreamConnectionError(f"The upstream {where} failed: {type(exc).__name__}: {exc}")


class HeldStream:
    """An open SDK streaming response, relayed (and optionally rewritten) chunk by chunk.

    Satisfies :class:`gateway.providers.UpstreamStream`; ``aclose`` leaves the SDK's context,
    which closes the connection (cancelling the upstream request if it is still running).
    """

    def __init__(
        self,
        context: Any,
        response: RawResponse,
        where: str,
        rewriter: StreamRewriter | None,
        errors: tuple[type[Exception], ...],
    ) -> None:
        self._context = context
        self._response = response
        self._where = where
        self._rewriter = rewriter
        self._errors = errors
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.iter_bytes():
                out = self._rewriter.feed(chunk) if self._rewriter else chunk
                if out:
                    yield out
            if self._rewriter and (tail := self._rewriter.finish()):
                yield tail
        except self._errors as exc:
            raise map_sdk_error(exc, self._where) from None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._context.__aexit__(None, None, None)


async def open_raw(
    call: Callable[[], Any], first_byte_s: float, where: str, errors: tuple[type[Exception], ...]
) -> tuple[Any, RawResponse]:
    """Enter an SDK ``with_streaming_response`` call within the first-byte timeout.

    Returns the context (to exit later) and the raw response.
    Raises:
        GatewayError: the upstream failed or answered with an error status.
    """
    context = call()
    try:
        async with asyncio.timeout(first_byte_s):
            response = await context.__aenter__()
    except errors as exc:
        raise map_sdk_error(exc, where) from None
    except TimeoutError:
        raise UpstreamTimeoutError(f"The upstream {where} did not answer in time.") from None
    return context, response


async def read_raw(
    call: Callable[[], Any],
    first_byte_s: float,
    where: str,
    errors: tuple[type[Exception], ...],
    convert: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """The whole body of an SDK ``with_streaming_response`` call (converted if asked)."""
    context, response = await open_raw(call, first_byte_s, where, errors)
    try:
        body = await response.read()
    except errors as exc:
        raise map_sdk_error(exc, where) from None
    finally:
        await context.__aexit__(None, None, None)
    return convert(body) if convert else body
