"""One HTTP request as the hot routes see it, read straight from the ASGI scope.

The inference routes (:mod:`gateway.routes.front`) skip Litestar's request machinery: they need
the headers, the body (bounded) and a request id, nothing else, and on the gateway's hottest path
(cache hits) Litestar's per-request work cost more CPU than the gateway's own.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping

from litestar.types import Receive, Scope

from gateway.errors import PayloadTooLargeError

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# Generated ids: a random per-process prefix and a counter; unique across processes and restarts,
# and several times cheaper than uuid4() on the hot path.
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count()


def request_id_for(headers: Mapping[str, str]) -> str:
    """The client's ``x-request-id`` when well-formed, else a new one."""
    rid = headers.get("x-request-id")
    if not rid or not _REQUEST_ID.fullmatch(rid):
        rid = f"{_ID_PREFIX}{next(_id_counter):08x}"
    return rid


class ClientDisconnectedError(Exception):
    """The client went away before its request body arrived; there is no one to answer."""


class Call:
    """An HTTP request: lower-case header names to values (the last wins), and its body.

    Attributes:
        headers: the request's headers, decoded as Latin-1 (as HTTP/1.1 defines them).
        request_id: the client's well-formed ``x-request-id``, or a new one.
    """

    __slots__ = ("_receive", "headers", "request_id")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        self.headers: dict[str, str] = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        self.request_id = request_id_for(self.headers)

    async def body(self, limit: int) -> bytes:
        """The whole request body.

        Raises:
            PayloadTooLargeError: the body (or its declared ``content-length``) is over ``limit``.
            ClientDisconnectedError: the client went away first.
        """
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large()
        message = await self._receive()
        if message["type"] != "http.request":
            raise ClientDisconnectedError
        first: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(first) > limit:
                raise _too_large()
            return first
        parts, size = [first], len(first)
        while True:
            message = await self._receive()
            if message["type"] != "http.request":
                raise ClientDisconnectedError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large()
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def disconnected(self) -> None:
        """Return once the client has gone away (after its body was read: the next message
        the server sends is the disconnect)."""
        while (await self._receive())["type"] != "http.disconnect":
            pass


def _too_large() -> PayloadTooLargeError:
    return PayloadTooLargeError("The request body is larger than the gateway's limit.")
