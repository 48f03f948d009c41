"""The ``mcp`` tool source: the tools of one MCP server, over stdio or streamable HTTP.

The source connects on the first :meth:`McpToolSource.list_tools` and keeps that one session
open for every later list and call (a stdio server is one subprocess for the gateway's life).
When the session is lost, the source opens a new one and sends the request once more. Lost
means the SDK reports the connection closed (the subprocess died, the HTTP server went away:
it raises that for requests it could not deliver, and for requests in flight then, which a dead
server cannot finish anyway), or the server calls the request invalid, which is how an HTTP
server of the handshake era answers (404) a session id it no longer knows, after a restart or
an idle expiry (the MCP spec says to start a new session then; the request was not run).

Each session lives in a task of its own (:mod:`gateway_mcp.session`), because the SDK's context
managers must be closed by the task that opened them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    INVALID_REQUEST,
    CallToolResult,
    ContentBlock,
    TextContent,
)

from gateway.errors import GatewayError, ServiceUnavailableError
from gateway.tools.base import JSON, ToolContext, ToolResult
from gateway_mcp.session import McpSession, OpenClient, describe

log = logging.getLogger("gateway.tools.mcp")

_T = TypeVar("_T")

# The MCP error codes after which the session is replaced (see the module docstring).
_SESSION_LOST = frozenset({CONNECTION_CLOSED, INVALID_REQUEST})
# A server whose tools/list never stops paginating must not hang the gateway.
_MAX_LIST_PAGES = 100
# The HTTP client's timeouts: the SDK's own defaults (a server may hold an SSE stream open
# between events); each request is bounded by the source's timeout besides.
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


class McpTool:
    """One tool of an MCP server, as the gateway calls it.

    Attributes:
        name: the MCP tool's own name (the gateway prefixes the source's).
        description: its description ("" when the server gives none).
        parameters: its ``inputSchema``.
    """

    __slots__ = ("_source", "description", "name", "parameters")

    def __init__(
        self, source: McpToolSource, name: str, description: str, parameters: Mapping[str, Any]
    ) -> None:
        self._source = source
        self.name = name
        self.description = description
        self.parameters = parameters

    def __repr__(self) -> str:
        return f"McpTool({self.name!r})"

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        """Call the tool on the server within ``min(timeout_s, context.time_left())``.

        Never raises: a timeout, a transport failure or a protocol error becomes a result with
        ``is_error`` set that says why.
        """
        return await self._source.call_tool(self.name, arguments, context)


class McpToolSource:
    """The tools of one MCP server (satisfies ``gateway.tools.base.ToolSource``).

    Args:
        transport: ``stdio`` (run ``command`` as a subprocess) or ``http`` (streamable HTTP
            at ``url``).
        command: the server's executable (stdio).
        args: its arguments (stdio).
        env: environment variables set for it, over a minimal inherited set (stdio).
        cwd: its working directory (stdio).
        url: the server's MCP endpoint (http).
        headers: sent with every request, an ``Authorization`` header for example (http).
        timeout_s: the longest one connect, listing or call may take.
        list_ttl_s: how long a tool listing is reused before the server is asked again.

    Raises:
        ValueError: an option is missing, of the wrong type or out of range (the message
            names it), or belongs to the other transport.
    """

    label: str
    """Names the server in logs and errors (``stdio:<command>``, or the URL without its
    credentials and query)."""
    _open_client: OpenClient

    def __init__(
        self,
        *,
        transport: Literal["stdio", "http"],
        command: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
        list_ttl_s: float = 60.0,
    ) -> None:
        self._timeout_s = _number("timeout_s", timeout_s, positive=True)
        self._list_ttl_s = _number("list_ttl_s", list_ttl_s, positive=False)
        if transport == "stdio":
            _absent("url", url, transport)
            _absent("headers", headers, transport)
            params = StdioServerParameters(
                command=_text("command", command),
                args=_texts("args", args),
                env=_text_map("env", env) if env is not None else None,
                cwd=_text("cwd", cwd) if cwd is not None else None,
            )
            self.label = f"stdio:{params.command}"
            # cache=None: the SDK's response cache would second-guess list_ttl_s.
            self._open_client = lambda: Client(params, cache=None)
        elif transport == "http":
            for name, value in (("command", command), ("env", env), ("cwd", cwd)):
                _absent(name, value, transport)
            _absent("args", args or None, transport)
            endpoint = _http_url(url)
            sent = _text_map("headers", headers or {})
            self.label = _url_label(endpoint)
            self._open_client = lambda: _http_client(endpoint, sent)
        else:
            raise ValueError(f"transport: expected 'stdio' or 'http', got {transport!r}")
        self._session: McpSession | None = None
        # Every session opened, until its owner task ends: aclose waits for them all.
        self._owners: set[asyncio.Task[None]] = set()
        self._listing: tuple[float, tuple[McpTool, ...]] | None = None  # (expiry, tools)
        self._closed = False

    async def list_tools(self) -> Sequence[McpTool]:
        """The server's tools, from the cached listing while it is fresh.

        Raises:
            ServiceUnavailableError: the server cannot be reached, did not answer within
                ``timeout_s``, refused the listing, or the source was closed.
        """
        if self._closed:
            raise ServiceUnavailableError(f"MCP tool source {self.label} is closed")
        if self._listing is not None and time.monotonic() < self._listing[0]:
            return self._listing[1]
        try:
            with anyio.fail_after(self._timeout_s):
                tools = await self._with_client(self._fetch_tools)
        except GatewayError:
            raise
        except TimeoutError:
            raise ServiceUnavailableError(
                f"MCP server {self.label} did not list its tools within {self._timeout_s:g} s"
            ) from None
        except Exception as error:
            raise ServiceUnavailableError(
                f"MCP server {self.label} could not list its tools: {describe(error)}"
            ) from error
        self._listing = (time.monotonic() + self._list_ttl_s, tools)
        return tools

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any], context: ToolContext
    ) -> ToolResult:
        """Call tool ``name`` on the server (what :meth:`McpTool.call` does); never raises."""
        bound = min(self._timeout_s, context.time_left())
        if bound <= 0:
            return ToolResult(f"no time left to call {name}", is_error=True)

        async def call(client: Client) -> CallToolResult:
            return await client.call_tool(name, dict(arguments))

        try:
            with anyio.fail_after(bound):
                result = await self._with_client(call)
        except TimeoutError:
            reason = f"no answer within {bound:.3g} s"
        except GatewayError as error:
            reason = error.message
        except MCPError as error:
            reason = f"MCP error {error.code}: {error}"
        # Whatever else fails (the SDK, the transport), the model hears why.
        except Exception as error:
            context.log.warning("MCP tool %s on %s failed", name, self.label, exc_info=True)
            return ToolResult(f"the tool {name} failed: {describe(error)}", is_error=True)
        else:
            return _to_result(result)
        context.log.info("MCP tool %s on %s failed: %s", name, self.label, reason)
        return ToolResult(f"the tool {name} failed: {reason}", is_error=True)

    async def aclose(self) -> None:
        """Close the session and end a stdio server's subprocess (also one that already
        died); later lists raise and later calls fail. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        # Sessions dropped after a failure close by themselves; wait until they have.
        if self._owners:
            await asyncio.wait(set(self._owners))

    async def _with_client(self, request: Callable[[Client], Awaitable[_T]]) -> _T:
        """Send ``request`` through the session; if the session is lost, once more through a
        new one."""
        session = self._current_session()
        try:
            return await request(await session.client())
        except MCPError as error:
            if error.code not in _SESSION_LOST:
                raise
            log.info("MCP server %s: session lost (%s); reconnecting", self.label, error)
            self._drop(session)
        session = self._current_session()
        return await request(await session.client())

    def _current_session(self) -> McpSession:
        """The current session, a new (connecting) one if there is none usable.

        Synchronous on purpose, instead of a lock: nothing can run between the check and the
        assignment, so concurrent first calls all get the one session and wait for its one
        connect (:meth:`McpSession.client`).
        """
        if self._closed:
            raise ServiceUnavailableError(f"MCP tool source {self.label} is closed")
        session = self._session
        if session is None or not session.usable:
            if session is not None:
                self._drop(session)
            session = self._session = McpSession(
                self._open_client, label=self.label, connect_timeout_s=self._timeout_s
            )
            self._owners.add(session.task)
            session.task.add_done_callback(self._owners.discard)
        return session

    def _drop(self, session: McpSession) -> None:
        """Stop using ``session`` and close it in the background (the owner task ends
        itself; :meth:`aclose` waits for it)."""
        if self._session is session:
            self._session = None
        closing = asyncio.get_running_loop().create_task(session.close())
        self._owners.add(closing)
        closing.add_done_callback(self._owners.discard)

    async def _fetch_tools(self, client: Client) -> tuple[McpTool, ...]:
        tools: list[McpTool] = []
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(
                McpTool(self, tool.name, tool.description or "", tool.input_schema)
                for tool in page.tools
            )
            cursor = page.next_cursor
            if cursor is None:
                break
        return tuple(tools)


@asynccontextmanager
async def _http_client(url: str, headers: Mapping[str, str]) -> AsyncIterator[Client]:
    """A client over streamable HTTP that sends ``headers`` with every request."""
    async with (
        httpx2.AsyncClient(headers=dict(headers), timeout=_HTTP_TIMEOUT) as http,
        # The transport does not close a client it was given: this block does.
        Client(streamable_http_client(url, http_client=http), cache=None) as client,
    ):
        yield client


def _to_result(result: CallToolResult) -> ToolResult:
    """The structured content when there is some, else the text blocks joined."""
    content: JSON
    if result.structured_content is not None:
        content = result.structured_content
    else:
        content = "\n".join(_block_text(block) for block in result.content)
    return ToolResult(content, is_error=result.is_error)


def _block_text(block: ContentBlock) -> str:
    if isinstance(block, TextContent):
        return block.text
    # Images, audio and resources have no place in a tool message's text; say what was left.
    return f"[{block.type} content omitted]"


def _url_label(url: str) -> str:
    """The URL without credentials or query (which may carry tokens), for logs and errors."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _http_url(value: object) -> str:
    url = _text("url", value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url: expected an http:// or https:// URL, got {url!r}")
    return url


def _number(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: expected a {'positive' if positive else 'non-negative'} number")
    return float(value)


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _texts(name: str, value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{name}: expected a list of strings, got {value!r}")
    if not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name}: expected a list of strings, got {value!r}")
    return list(value)


def _text_map(name: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise ValueError(f"{name}: expected a mapping of strings to strings")
    return dict(value)


def _absent(name: str, value: object, transport: str) -> None:
    if value is not None:
        raise ValueError(f"{name}: not an option of the {transport} transport")
