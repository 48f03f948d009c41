"""A minimal ASGI response for bodies that are already encoded.

Litestar's ``Response`` goes through header normalisation and a conversion to ``ASGIResponse`` on
every request; the relay path already has the final bytes, so it sends them directly.
"""

from __future__ import annotations

from collections.abc import Mapping

from litestar.types import Receive, Scope, Send

JSON_CONTENT_TYPE = b"application/json"


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
        encoded = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if headers:
            encoded.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
        self._headers = encoded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self._status, "headers": self._headers}
        )
        await send({"type": "http.response.body", "body": self._body, "more_body": False})
