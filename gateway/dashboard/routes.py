"""The dashboard's routes (docs/dashboard.md):

- ``GET /dashboard``: the page (the login form, with 401, to a caller not yet known);
- ``POST /dashboard/login`` (form field ``key``) and ``POST /dashboard/logout``: the session
  cookie;
- ``GET /dashboard/events``: the updates as Server-Sent Events (``event: update``, the JSON
  of :func:`gateway.dashboard.view.render`, its ``id`` the update's sequence number, so a
  reconnecting ``EventSource`` gets only what it missed);
- ``GET /dashboard/static/<file>``: the page's script and style, shipped in the package.

The page loads nothing from anywhere else: its Content-Security-Policy allows this origin only.
An event stream ends after :data:`STREAM_S` (the browser reconnects at once), so that an open
page never holds a stopping gateway for its whole shutdown grace.
"""

from __future__ import annotations

import html
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from gateway.dashboard.access import COOKIE, DashboardAccess, Viewer
from gateway.dashboard.feed import DashboardFeed
from gateway.dashboard.view import only_tenant
from gateway.errors import AuthenticationError, NotFoundError, PermissionDeniedError

STREAM_S = 20.0

STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}

HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}

_json = msgspec.json.Encoder()


def _asset(name: str) -> str:
    return resources.files("gateway.dashboard").joinpath("static", name).read_text("utf-8")


def _page(name: str, status: int = 200, **fields: str) -> Response[Any]:
    text = _asset(name)
    for field, value in fields.items():
        text = text.replace("{{" + field + "}}", html.escape(value))
    return Response(text, status_code=status, media_type="text/html", headers=HEADERS)


def _login_page(message: str, status: int) -> Response[Any]:
    return _page("login.html", status, message=message)


def _client(request: Request[Any, Any, Any]) -> str | None:
    return request.client.host if request.client else None


def _cross_site(request: Request[Any, Any, Any]) -> bool:
    """Whether a form post came from another site (login CSRF: a victim logged into the
    attacker's session, or logged out): the browser's ``Sec-Fetch-Site``, else an ``Origin``
    naming another host. A client that sends neither (curl, a script) is not a browser."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin == "null"
    return origin.partition("://")[2] != request.headers.get("host", "")


def _refused_cross_site() -> Response[Any]:
    return _login_page("Log in from this page: a form from another site was refused.", 403)


def build_dashboard_routes(feed: DashboardFeed, access: DashboardAccess) -> list[HTTPRouteHandler]:
    """The dashboard's routes, serving ``feed`` to the viewers ``access`` lets in."""

    async def viewer(request: Request[Any, Any, Any]) -> Viewer:
        return await access.viewer(request.headers, request.cookies, _client(request))

    @get("/dashboard", include_in_schema=False)
    async def page(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            who = await viewer(request)
        except AuthenticationError as exc:
            message = "" if exc.code == "dashboard_login" else exc.message
            return _login_page(message, 401)
        except PermissionDeniedError as exc:
            return _page("closed.html", 403, message=exc.message)
        return _page("dashboard.html", viewer=who.tenant or "all tenants")

    @post("/dashboard/login", status_code=303, include_in_schema=False)
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        if _cross_site(request):
            return _refused_cross_site()
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        try:
            who = await access.login(key)
        except AuthenticationError as exc:
            return _login_page(exc.message, 401)
        cookie = Cookie(
            key=COOKIE,
            value=access.sessions.issue(who),
            path="/dashboard",
            max_age=int(access.sessions.ttl_s),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return Response(b"", status_code=303, headers={"location": "/dashboard"}, cookies=[cookie])

    @post("/dashboard/logout", status_code=303, include_in_schema=False)
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        if _cross_site(request):
            return _refused_cross_site()
        gone = Cookie(key=COOKIE, value="", path="/dashboard", max_age=0, httponly=True)
        return Response(b"", status_code=303, headers={"location": "/dashboard"}, cookies=[gone])

    @get("/dashboard/static/{name:str}", include_in_schema=False)
    async def static(request: Request[Any, Any, Any]) -> Response[Any]:
        name = str(request.path_params["name"])
        media_type = STATIC.get(name)
        if media_type is None:
            raise NotFoundError(f"No dashboard file named `{name}`.")
        headers = {**HEADERS, "cache-control": "no-cache"}
        return Response(_asset(name), media_type=media_type, headers=headers)

    @get("/dashboard/events", include_in_schema=False)
    async def events(request: Request[Any, Any, Any]) -> Stream:
        who = await viewer(request)
        last = request.headers.get("last-event-id", "")
        # ASCII digits only (str.isdigit also takes "²"), and no more than an id has.
        after = int(last) if last.isascii() and last.isdigit() and len(last) <= 19 else None

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n\n"
            ends = time.monotonic() + STREAM_S
            async for view in feed.follow(after, until=ends):
                shown = view if who.tenant is None else only_tenant(view, who.tenant)
                yield b"id: %d\nevent: update\ndata: %s\n\n" % (view["seq"], _json.encode(shown))
                if time.monotonic() > ends:
                    break

        headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
        return Stream(stream(), media_type="text/event-stream", headers=headers)

    return [page, login, logout, static, events]
