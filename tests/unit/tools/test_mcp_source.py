"""The ``mcp`` tool source (plugins/gateway_mcp) against a real MCP server written with the SDK
(tests/fixtures/mcp_server.py), over stdio as a subprocess and over streamable HTTP on
loopback: listing, calls and their failures, reconnects, and closing."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gateway_mcp
import pytest
from gateway_mcp.source import McpTool, McpToolSource

from gateway.errors import ServiceUnavailableError
from gateway.identity import Principal
from gateway.tools.base import HttpReply, NetworkRefusedError, Tool, ToolContext, ToolSource

FIXTURES = Path(__file__).parents[2] / "fixtures"
SERVER = str(FIXTURES / "mcp_server.py")

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope, so the sources shared by the read-only tests live in one event loop.
    return "asyncio"


class NoNetwork:
    """The tools under test make no outbound HTTP of their own."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> HttpReply:
        raise NetworkRefusedError("no network in these tests")


def context(seconds: float = 10.0) -> ToolContext:
    return ToolContext(
        principal=Principal(key_id=None),
        deadline=time.monotonic() + seconds,
        request_id="req-1",
        call_id="call_1",
        agent="test-agent",
        log=logging.getLogger("gateway.test"),
        http=NoNetwork(),
    )


def stdio_source(**options: Any) -> McpToolSource:
    # A script path relative to `cwd`: the server starts only if `cwd` is applied.
    return McpToolSource(
        transport="stdio",
        command=sys.executable,
        args=["mcp_server.py", "stdio"],
        cwd=str(FIXTURES),
        timeout_s=10,
        **options,
    )


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def started(starts: Path) -> list[int]:
    """The pids the stdio server wrote to ``starts`` as it started (one line per connect)."""
    return [int(line) for line in starts.read_text().split()]


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def http_server(mode: str = "http", port: int = 0) -> Iterator[int]:
    """The test server over streamable HTTP in a subprocess; yields its port."""
    process = subprocess.Popen([sys.executable, SERVER, mode, str(port)], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())  # printed once the socket listens
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """The MCP endpoint of the test server, shared by the module."""
    with http_server() as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module", params=["stdio", "http"])
async def source(request: pytest.FixtureRequest, http_url: str) -> AsyncIterator[McpToolSource]:
    """A source on each transport, shared by the tests that leave its server as it was."""
    if request.param == "stdio":
        shared = stdio_source()
    else:
        shared = McpToolSource(transport="http", url=http_url)
    yield shared
    await shared.aclose()


@pytest.fixture
def starts(tmp_path: Path) -> Path:
    """A file the stdio server appends its pid to as it starts (one line per connect)."""
    return tmp_path / "starts"


async def tools_of(source: McpToolSource) -> dict[str, McpTool]:
    return {tool.name: tool for tool in await source.list_tools()}


async def test_lists_the_tools_with_their_schemas(source: McpToolSource) -> None:
    assert isinstance(source, ToolSource)
    tools = await tools_of(source)
    assert set(tools) == {"add", "divide", "echo", "fail", "slow", "pid", "header"}
    add = tools["add"]
    assert isinstance(add, Tool)
    assert add.description == "Add two integers."
    assert add.parameters["type"] == "object"
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert sorted(add.parameters["required"]) == ["a", "b"]


async def test_text_results_are_joined_and_structured_ones_kept(source: McpToolSource) -> None:
    tools = await tools_of(source)
    added = await tools["add"].call({"a": 2, "b": 3}, context())
    assert (added.content, added.is_error) == ("5", False)
    divided = await tools["divide"].call({"a": 7, "b": 2}, context())
    assert (divided.content, divided.is_error) == ({"quotient": 3, "remainder": 1}, False)


async def test_concurrent_calls_share_the_session(source: McpToolSource) -> None:
    echo = (await tools_of(source))["echo"]
    results = await asyncio.gather(*(echo.call({"text": f"n{i}"}, context()) for i in range(8)))
    assert [result.content for result in results] == [f"n{i}" for i in range(8)]


async def test_a_raising_tool_is_an_error_result(source: McpToolSource) -> None:
    result = await (await tools_of(source))["fail"].call({}, context())
    assert result.is_error
    assert "this tool always fails" in result.text()


async def test_a_call_past_the_deadline_is_an_error_and_the_session_survives(
    source: McpToolSource,
) -> None:
    tools = await tools_of(source)
    result = await tools["slow"].call({}, context(seconds=0.3))
    assert result.is_error
    assert "no answer within" in result.text()
    echoed = await tools["echo"].call({"text": "still here"}, context())
    assert (echoed.content, echoed.is_error) == ("still here", False)


async def test_a_call_with_no_time_left_is_an_error(source: McpToolSource) -> None:
    result = await (await tools_of(source))["echo"].call({"text": "x"}, context(seconds=-1))
    assert result.is_error
    assert "no time left" in result.text()


async def test_http_headers_are_sent(http_url: str) -> None:
    source = McpToolSource(transport="http", url=http_url, headers={"X-Test": "yes"})
    try:
        result = await (await tools_of(source))["header"].call({"name": "x-test"}, context())
        assert (result.content, result.is_error) == ("yes", False)
    finally:
        await source.aclose()


async def test_an_unreachable_url_fails_the_listing() -> None:
    source = McpToolSource(transport="http", url=f"http://127.0.0.1:{closed_port()}/mcp")
    with pytest.raises(ServiceUnavailableError, match="unavailable"):
        await source.list_tools()
    await source.aclose()


async def test_a_server_that_never_answers_fails_the_listing_in_time() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        source = McpToolSource(transport="http", url=f"http://127.0.0.1:{port}/mcp", timeout_s=0.5)
        with pytest.raises(ServiceUnavailableError, match=r"within 0\.5 s"):
            await source.list_tools()
        await source.aclose()


async def test_a_command_that_cannot_start_fails_the_listing(tmp_path: Path) -> None:
    source = McpToolSource(transport="stdio", command=str(tmp_path / "no-such-server"))
    with pytest.raises(ServiceUnavailableError, match="no-such-server"):
        await source.list_tools()
    await source.aclose()


async def test_concurrent_first_listings_share_one_subprocess_which_close_ends(
    starts: Path,
) -> None:
    source = stdio_source(env={"MCP_SERVER_STARTS": str(starts)})
    listings = await asyncio.gather(*(source.list_tools() for _ in range(4)))
    assert all(len(tools) == 7 for tools in listings)
    [pid] = started(starts)
    assert is_running(pid)
    await source.aclose()
    assert not is_running(pid)
    await source.aclose()
    with pytest.raises(ServiceUnavailableError, match="closed"):
        await source.list_tools()
    result = await listings[0][0].call({}, context())
    assert result.is_error
    assert "closed" in result.text()


async def test_a_dead_server_is_restarted_for_the_next_call_and_closed_when_dead_again(
    starts: Path,
) -> None:
    source = stdio_source(env={"MCP_SERVER_STARTS": str(starts)})
    try:
        tools = await tools_of(source)
        first = int((await tools["pid"].call({}, context())).text())
        os.kill(first, signal.SIGKILL)
        after = await tools["pid"].call({}, context())
        assert not after.is_error, after.content
        second = int(after.text())
        assert started(starts) == [first, second]
        os.kill(second, signal.SIGKILL)
    finally:
        await source.aclose()
    assert not is_running(second)


async def test_a_restarted_http_server_of_the_handshake_era_gets_a_new_session() -> None:
    # Such a server answers 404 to the session id it issued before its restart.
    with http_server("http-legacy") as port:
        source = McpToolSource(transport="http", url=f"http://127.0.0.1:{port}/mcp")
        pid = (await tools_of(source))["pid"]
        first = await pid.call({}, context())
    try:
        with http_server("http-legacy", port):
            second = await pid.call({}, context())
            assert not second.is_error, second.content
            assert second.text() != first.text()
    finally:
        await source.aclose()


async def test_the_listing_is_cached_for_its_ttl(http_url: str) -> None:
    cached = McpToolSource(transport="http", url=http_url, list_ttl_s=60)
    uncached = McpToolSource(transport="http", url=http_url, list_ttl_s=0)
    try:
        assert await cached.list_tools() is await cached.list_tools()
        assert await uncached.list_tools() is not await uncached.list_tools()
    finally:
        await cached.aclose()
        await uncached.aclose()


async def test_close_before_any_connect() -> None:
    source = stdio_source()
    await source.aclose()
    await source.aclose()
    with pytest.raises(ServiceUnavailableError, match="closed"):
        await source.list_tools()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"transport": "ftp"}, "transport"),
        ({"transport": "stdio"}, "command"),
        ({"transport": "stdio", "command": ""}, "command"),
        ({"transport": "stdio", "command": "x", "args": "a b"}, "args"),
        ({"transport": "stdio", "command": "x", "args": [1]}, "args"),
        ({"transport": "stdio", "command": "x", "env": {"A": 1}}, "env"),
        ({"transport": "stdio", "command": "x", "url": "http://h/mcp"}, "url"),
        ({"transport": "http"}, "url"),
        ({"transport": "http", "url": "file:///etc/passwd"}, "url"),
        ({"transport": "http", "url": "http://h/mcp", "headers": {"A": 1}}, "headers"),
        ({"transport": "http", "url": "http://h/mcp", "command": "x"}, "command"),
        ({"transport": "http", "url": "http://h/mcp", "args": ["x"]}, "args"),
        ({"transport": "http", "url": "http://h/mcp", "timeout_s": 0}, "timeout_s"),
        ({"transport": "http", "url": "http://h/mcp", "timeout_s": True}, "timeout_s"),
        ({"transport": "http", "url": "http://h/mcp", "list_ttl_s": -1}, "list_ttl_s"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        gateway_mcp.build_mcp_source(**options)


def test_an_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="colour"):
        gateway_mcp.build_mcp_source(transport="http", url="http://h/mcp", colour="red")


def test_the_plugin_registers_the_mcp_source() -> None:
    registered: dict[str, Callable[..., ToolSource]] = {}
    gateway_mcp.register_tool_sources(registered.__setitem__)
    assert registered == {"mcp": gateway_mcp.build_mcp_source}


def test_without_the_sdk_the_plugin_imports_and_building_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # `import mcp` now fails as if not installed
    monkeypatch.delitem(sys.modules, "gateway_mcp.source")
    monkeypatch.delitem(sys.modules, "gateway_mcp")
    plugin = importlib.import_module("gateway_mcp")
    with pytest.raises(ValueError, match=r"pip install 'gateway\[mcp\]'"):
        plugin.build_mcp_source(transport="stdio", command="x")
