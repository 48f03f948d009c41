"""A local HTTP target for the network tests, and a resolver that answers from a dict.

No request leaves loopback: test names resolve through :class:`DictResolver`, never DNS, and the
only server connected to is :class:`Target`, a real aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


class DictResolver:
    """A :class:`gateway.tools.network.Resolver` over a fixed table; records the names asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        try:
            return self.table[host]
        except KeyError:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test table") from None


@dataclass
class Seen:
    """One request the target received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Target:
    """The server's address and what it saw. ``release`` frees the handlers of ``/hold``."""

    port: int
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def running_target() -> AsyncIterator[Target]:
    """Serve on 127.0.0.1, on a free port:

    - ``/echo``: 200, ``echo <method>``;
    - ``/redirect?to=URL&status=N``: redirect ``N`` (302 by default) to ``URL``;
    - ``/loop``: a redirect to itself;
    - ``/big``: 10 000 bytes;
    - ``/latin1``: ``café`` in Latin-1 (not UTF-8);
    - ``/hold``: answers once ``release`` is set.
    """
    target = Target(port=0)

    async def record(request: web.Request) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        target.seen.append(Seen(request.method, request.path, headers, await request.read()))

    async def echo(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text=f"echo {request.method}", headers={"x-extra": "1"})

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"location": request.query["to"]})

    async def loop(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=302, headers={"location": "/loop"})

    async def big(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"x" * 10_000)

    async def latin1(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body="café".encode("latin-1"), content_type="text/plain")

    async def hold(request: web.Request) -> web.Response:
        await record(request)
        await target.release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/big", big)
    app.router.add_get("/latin1", latin1)
    app.router.add_get("/hold", hold)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    target.port = runner.addresses[0][1]
    try:
        yield target
    finally:
        target.release.set()
        await runner.cleanup()
