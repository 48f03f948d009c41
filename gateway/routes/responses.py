"""Minimal ASGI responses: bodies that are already encoded, and event streams.

Litestar's ``Response`` goes through header normalisation and a conversion to ``ASGIResponse`` on
every request; the relay path already has the final bytes, so it sends them directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import anyio
from litestar.types import Receive, Scope, Send

from gateway.closing import close_chunks

JSON_CONTENT_TYPE = b"application/json"
EVENT_STREAM_CONTENT_TYPE = b"text/event-stream"


def _encode_headers(
    content_type: bytes, headers: Mapping[str, str] | None, extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    encoded = [(b"content-type", content_type), *extra]
    if headers:
        encoded.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    return encoded


class RawResponse:
    """An ASGI app sending ``body`` with ``status`` and ``headers`` (lower-case names)."""

    __slots__ = ("_body", "_headers", "_status")

    def __init__(
        self,
        body: bytes,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: bytes = JSON_CONTENT_TYPE,
    ) -> None:
        self._body = body
        self._status = status
        self._headers = _encode_headers(
            content_type, headers, [(b"content-length", str(len(body)).encode())]
        )

    @property
    def body(self) -> bytes:
        return self._body

    @property
    def status(self) -> int:
        return self._status

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower case), if set."""
        return next((v for k, v in self._headers if k == name), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self._status, "headers": self._headers}
        )
        await send({"type": "http.response.body", "body": self._body, "more_body": False})


class EventStream:
    """An ASGI app streaming ``chunks`` (Server-Sent Events) with status 200.

    The client going away cancels the stream at once, even while it waits on an upstream that
    sends nothing; the iterator is closed however the stream ends, so its ``finally`` blocks
    (closing the upstream, recording metrics) always run.
    """

    __slots__ = ("_chunks", "_headers")

    def __init__(
        self, chunks: AsyncIterator[bytes], headers: Mapping[str, str] | None = None
    ) -> None:
        self._chunks = chunks
        self._headers = _encode_headers(EVENT_STREAM_CONTENT_TYPE, headers, [])

    @property
    def chunks(self) -> AsyncIterator[bytes]:
        """The stream's bytes (for a caller in process: an agent's step)."""
        return self._chunks

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower case), if set."""
        return next((v for k, v in self._headers if k == name), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = self._chunks
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await close_chunks(chunks)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
