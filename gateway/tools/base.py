"""Contracts for tools (``register_tools``) and tool sources (``register_tool_sources``).

A tool is a function a model may call; the gateway (an agent, or server-side tool execution)
runs it with a :class:`ToolContext` saying who asked, until when, and with which HTTP client.
A tool never raises for a failure the model should hear about: it returns a :class:`ToolResult`
with ``is_error`` set, which goes back to the model like any other result. A tool source lists
tools at run time (an MCP server, a catalogue service), so its tools need not be known at build.

Tool names are what models call: letters, digits, ``_`` and ``-`` (OpenAI's function-name
pattern), at most 64 characters. A source's tools are namespaced ``<source>.<tool>`` in the
config; models see them as ``<source>__<tool>`` (the dot is not allowed in function names).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias, runtime_checkable

from gateway.identity import Principal

JSON: TypeAlias = "bool | int | float | str | Sequence[JSON] | Mapping[str, JSON] | None"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HttpReply:
    """An HTTP answer as a tool sees it (whatever its status: a 404 is an answer, not an error).

    Attributes:
        status: the final response's status.
        headers: its headers (lower-case names; the last value wins).
        body: at most the policy's ``max_response_bytes`` of its body.
        url: the URL that answered (after the redirects followed).
        truncated: the body was longer and was cut at the cap.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    truncated: bool = False


class NetworkRefusedError(Exception):
    """The network policy refused a request (a scheme, host, address or redirect it does not
    allow); the message says which and why, for the model to read."""


class HttpFailureError(Exception):
    """A permitted request failed: it could not connect, timed out, or redirected too often."""


class HttpClient(Protocol):
    """Outbound HTTP under the network policy of the agent (or model group) running the tool.

    Every address a name resolves to is checked before connecting, the connection goes to the
    checked address, and each redirect is checked again (``gateway.tools.network``).
    """

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> HttpReply:
        """Send one request, following redirects within the policy.

        ``timeout_s`` (bounded by the policy's own) covers the whole exchange.

        Raises:
            NetworkRefusedError: the policy refused the URL or a redirect.
            HttpFailureError: it could not connect, timed out, or redirected too many times.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolContext:
    """What a tool call may rely on besides its arguments.

    Attributes:
        principal: the caller whose request led to the call; a tool acting for them checks
            what they may do with it (``key_id``, ``tenant``, ``metadata``), never with a key of
            its own.
        deadline: ``time.monotonic()`` by which the call must have returned.
        request_id: the ``x-request-id`` of the client request, for logs and upstream calls.
        call_id: the model's id for this call (``call_...``).
        agent: the agent (or model group, for server-side tools) whose loop made the call.
        log: a logger already labelled with the request and the tool.
        http: outbound HTTP under that agent's network policy (deny by default).
    """

    principal: Principal
    deadline: float
    request_id: str
    call_id: str
    agent: str
    log: logging.Logger | logging.LoggerAdapter[logging.Logger]
    http: HttpClient

    def time_left(self) -> float:
        """Seconds until :attr:`deadline` (negative once past it)."""
        return self.deadline - time.monotonic()


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call, as the model will see it.

    Attributes:
        content: text, or a JSON-able value (sent to the model as JSON text).
        is_error: the call failed; ``content`` says why, for the model to recover.
        metadata: facts for the gateway (timings, sources, cost), never shown to the model.
    """

    content: JSON
    is_error: bool = False
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def text(self) -> str:
        """The content as the text of a ``tool`` message."""
        return self.content if isinstance(self.content, str) else json.dumps(self.content)


@runtime_checkable
class Tool(Protocol):
    """A callable tool, described by a JSON Schema for its arguments.

    Attributes:
        name: the function name the model calls (unique among registered tools).
        description: what it does, shown to the model.
        parameters: JSON Schema of the arguments object.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        """Run the tool with ``arguments`` (already valid against :attr:`parameters`).

        Return by ``context.deadline``; report failures the model should see as a result with
        ``is_error=True``. Exceptions are turned into such a result by the caller and logged.
        """
        ...


@runtime_checkable
class ToolSource(Protocol):
    """Tools discovered at run time (an MCP server): listed when needed, called as any tool."""

    async def list_tools(self) -> Sequence[Tool]:
        """The tools offered now. The caller may cache the list for a short while.

        Raises:
            gateway.errors.GatewayError: the source cannot be reached; its tools are then
                unavailable, and the request goes on without them.
        """
        ...

    async def aclose(self) -> None:
        """Release connections (called once, at the gateway's shutdown)."""
        ...


ToolSourceFactory: TypeAlias = Callable[..., ToolSource]
"""What ``register_tool_sources`` registers; called with the source's config options as keyword
arguments (``TypeError``/``ValueError`` for bad ones become config errors)."""
