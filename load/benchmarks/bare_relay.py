"""The thinnest possible relay: the reference the gateway's overhead is measured against.

A bare ASGI function under uvicorn (uvloop + httptools, like the gateway) with one pooled
:class:`aiohttp.ClientSession` (the gateway's connector settings, from
``gateway/providers/base.py``). No validation, no auth, no metrics, no timeouts: it reads the
request body, POSTs it to the upstream's same path and answers with the upstream's status and
body; a stream (``text/event-stream``) is relayed chunk by chunk as it arrives.

Usage: python load/benchmarks/bare_relay.py --port 8001 --upstream http://127.0.0.1:8000
(or ``BARE_RELAY_UPSTREAM=... uvicorn --factory bare_relay:app_from_env``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPSTREAM_ENV = "BARE_RELAY_UPSTREAM"
_REQUEST_HEADERS = {"content-type": "application/json"}


def create_app(upstream: str) -> ASGIApp:
    """The relay to ``upstream`` (``http://host:port``) as an ASGI app."""
    upstream = upstream.rstrip("/")
    session: aiohttp.ClientSession | None = None

    async def lifespan(receive: Receive, send: Send) -> None:
        nonlocal session
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(
                    limit=0, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True
                )
                session = aiohttp.ClientSession(
                    connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if session is not None:
                    await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http" or session is None:
            return
        message = await receive()
        body: bytes = message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            body += message.get("body", b"")
        async with session.post(
            upstream + scope["path"], data=body, headers=_REQUEST_HEADERS
        ) as response:
            content_type = response.headers.get("content-type", "application/octet-stream")
            if content_type.startswith("text/event-stream"):
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": [(b"content-type", content_type.encode())],
                    }
                )
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            data = await response.read()
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    return app


def app_from_env() -> ASGIApp:
    """uvicorn factory: the relay to the upstream in ``BARE_RELAY_UPSTREAM``."""
    return create_app(os.environ[UPSTREAM_ENV])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://host:port of the upstream")
    args = parser.parse_args()
    # The same server settings as the gateway's worker (gateway/server.py).
    uvicorn.run(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
