"""The ASGI front: hot routes answer without Litestar, with the same error contract."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest
from litestar import Litestar, get
from litestar.types import ASGIApp

from gateway.errors import InvalidRequestError
from gateway.routes.calls import Call
from gateway.routes.front import GatewayApp, HotRoute, anthropic_error_response
from gateway.routes.responses import RawResponse
from gateway.server import BackgroundServer
from tests.support.servers import Sim, group, http_json, running_gateway
from tests.support.spec import validate

LIMIT = 1024


async def echo(call: Call) -> ASGIApp:
    body = await call.body(LIMIT)
    return RawResponse(body, 200, {"x-request-id": call.request_id})


async def broken(call: Call) -> ASGIApp:
    raise RuntimeError("a bug in a handler")


async def refuses(call: Call) -> ASGIApp:
    raise InvalidRequestError("no", param="model")


@get("/other")
async def other() -> dict[str, str]:
    return {"served_by": "litestar"}


@pytest.fixture(scope="module")
def front() -> Iterator[str]:
    app = GatewayApp(
        Litestar([other]),
        {
            "/echo": HotRoute(echo),
            "/broken": HotRoute(broken),
            "/anthropic": HotRoute(refuses, anthropic_error_response),
        },
    )
    with BackgroundServer(app) as server:
        yield server.url


def test_hot_route_and_fallback_to_litestar(front: str) -> None:
    status, headers, body = http_json("POST", f"{front}/echo", {"a": 1}, {"x-request-id": "r-1"})
    assert (status, body, headers["x-request-id"]) == (200, {"a": 1}, "r-1")
    assert http_json("POST", f"{front}/echo/", {"b": 2})[2] == {"b": 2}
    assert http_json("GET", f"{front}/other")[2] == {"served_by": "litestar"}


def test_other_methods_get_405_with_allow(front: str) -> None:
    status, headers, body = http_json("GET", f"{front}/echo")
    assert status == 405
    assert headers["allow"] == "POST"
    assert headers["x-request-id"]
    validate("ErrorResponse", body)


def test_a_handler_bug_is_a_500_envelope_not_a_dropped_connection(front: str) -> None:
    status, headers, body = http_json("POST", f"{front}/broken", {})
    assert status == 500
    assert body["error"]["code"] == "internal_error"
    assert headers["x-request-id"]
    validate("ErrorResponse", body)


def test_errors_in_the_routes_format(front: str) -> None:
    status, _, body = http_json("POST", f"{front}/anthropic", {})
    assert status == 400
    assert body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "model: no"},
    }


def test_chunked_body_over_the_limit_is_413(front: str) -> None:
    host, port = front.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    chunks = (b"x" * 300 for _ in range(10))  # no content-length: only the running size tells
    conn.request("POST", "/echo", body=chunks, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    assert b"request_too_large" in response.read()
    conn.close()
    small = (b"y" * 300 for _ in range(3))
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/echo", body=small, encode_chunked=True)
    assert conn.getresponse().read() == b"y" * 900
    conn.close()


def test_client_leaving_mid_body_breaks_nothing(front: str) -> None:
    host, port = front.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n" + b"z" * 100)
    assert http_json("POST", f"{front}/echo", {"still": "up"})[2] == {"still": "up"}


def test_messages_route_errors_keep_anthropic_shape(sim: Sim) -> None:
    config = {"models": [group("chat", sim.url)], "server": {"max_body_bytes": 2048}}
    with running_gateway(config) as gw:
        big = {
            "model": "chat",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "x" * 4000}],
        }
        status, _, body = http_json("POST", f"{gw.url}/v1/messages", big)
        assert status == 413
        assert body["type"] == "error"
        assert body["error"]["type"] == "request_too_large"
        status, headers, body = http_json("GET", f"{gw.url}/v1/messages")
        assert (status, headers["allow"], body["type"]) == (405, "POST", "error")
