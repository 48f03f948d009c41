"""The ``http_request`` tool (gateway_tools.http_request) through a real guarded client to a
real server on loopback: answers, refusals and failures come back as tool results."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import pytest
from gateway_tools.http_request import HttpRequestTool

from gateway.identity import Principal
from gateway.settings_agents import NetworkSettings
from gateway.tools.base import Tool, ToolContext
from gateway.tools.network import GuardedHttpClient, NetworkPolicy
from tests.unit.tools.support import DictResolver, Target, running_target

pytestmark = pytest.mark.anyio


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with running_target() as t:
        yield t


@pytest.fixture
async def http() -> AsyncIterator[GuardedHttpClient]:
    settings = NetworkSettings(
        allow_domains=["api.test"], allow_addresses=["127.0.0.1/32"], max_response_bytes=100
    )
    client = GuardedHttpClient(
        NetworkPolicy.from_settings(settings), resolver=DictResolver({"api.test": ["127.0.0.1"]})
    )
    yield client
    await client.aclose()


def context(http: GuardedHttpClient, seconds: float = 10.0) -> ToolContext:
    return ToolContext(
        principal=Principal(key_id="k1"),
        deadline=time.monotonic() + seconds,
        request_id="req-1",
        call_id="call_1",
        agent="researcher",
        log=logging.getLogger("gateway.tools.test"),
        http=http,
    )


def test_it_is_a_tool_with_a_schema() -> None:
    tool = HttpRequestTool()
    assert isinstance(tool, Tool)
    assert tool.name == "http_request"
    properties = tool.parameters["properties"]
    assert properties["method"]["enum"] == ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
    assert tool.parameters["required"] == ["url"]


async def test_a_get_returns_status_useful_headers_and_text(
    target: Target, http: GuardedHttpClient
) -> None:
    url = f"http://api.test:{target.port}/echo"
    result = await HttpRequestTool().call({"url": url}, context(http))
    assert not result.is_error
    assert result.content == {
        "status": 200,
        "headers": {"content-type": "text/plain; charset=utf-8", "content-length": "8"},
        "body": "echo GET",
        "truncated": False,
        "url": url,
    }
    assert target.seen[0].headers["host"] == f"api.test:{target.port}"


async def test_a_post_sends_its_headers_and_body(target: Target, http: GuardedHttpClient) -> None:
    arguments = {
        "method": "POST",
        "url": f"http://api.test:{target.port}/echo",
        "headers": {"Content-Type": "application/json", "X-Trace": "t1"},
        "body": '{"q": "ünï"}',
    }
    result = await HttpRequestTool().call(arguments, context(http))
    assert isinstance(result.content, dict)
    assert result.content["body"] == "echo POST"
    seen = target.seen[0]
    assert (seen.method, seen.body) == ("POST", '{"q": "ünï"}'.encode())
    assert (seen.headers["content-type"], seen.headers["x-trace"]) == ("application/json", "t1")


async def test_redirects_show_the_final_url(target: Target, http: GuardedHttpClient) -> None:
    base = f"http://api.test:{target.port}"
    result = await HttpRequestTool().call({"url": f"{base}/redirect?to=/echo"}, context(http))
    assert isinstance(result.content, dict)
    assert (result.content["status"], result.content["url"]) == (200, f"{base}/echo")


async def test_bodies_are_capped_and_decoded_with_replacement(
    target: Target, http: GuardedHttpClient
) -> None:
    big = await HttpRequestTool().call({"url": f"http://api.test:{target.port}/big"}, context(http))
    assert isinstance(big.content, dict)
    assert (big.content["body"], big.content["truncated"]) == ("x" * 100, True)
    latin = await HttpRequestTool().call(
        {"url": f"http://api.test:{target.port}/latin1"}, context(http)
    )
    assert isinstance(latin.content, dict)
    assert latin.content["body"] == "caf\ufffd"


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "connection",
        "Proxy-Authorization",
        "proxy-connection",
        "Transfer-Encoding",
        "Content-Length",
        "Upgrade",
    ],
)
async def test_connection_headers_are_refused(
    target: Target, http: GuardedHttpClient, header: str
) -> None:
    arguments = {"url": f"http://api.test:{target.port}/echo", "headers": {header: "x"}}
    result = await HttpRequestTool().call(arguments, context(http))
    assert result.is_error
    assert result.content == f"the header {header!r} may not be set"
    assert target.seen == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata"),
        ("http://metadata.google.internal/", "metadata.google.internal is a cloud metadata host"),
        ("http://elsewhere.test/", "elsewhere.test is not in allow_domains"),
        ("file:///etc/passwd", "the scheme 'file' is not allowed"),
    ],
)
async def test_refusals_are_error_results(http: GuardedHttpClient, url: str, why: str) -> None:
    result = await HttpRequestTool().call({"url": url}, context(http))
    assert result.is_error
    assert isinstance(result.content, str)
    assert result.content.startswith("refused: ")
    assert why in result.content


async def test_the_call_deadline_bounds_the_request(
    target: Target, http: GuardedHttpClient
) -> None:
    url = f"http://api.test:{target.port}/hold"
    result = await HttpRequestTool().call({"url": url}, context(http, seconds=0.2))
    assert result.is_error
    assert isinstance(result.content, str)
    assert "timed out" in result.content
    assert [s.path for s in target.seen] == ["/hold"]
