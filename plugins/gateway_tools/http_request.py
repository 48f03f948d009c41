"""The ``http_request`` tool: one HTTP request, under the calling agent's network policy.

The tool holds no network access of its own: it sends through ``ToolContext.http``, the
agent's :class:`~gateway.tools.network.GuardedHttpClient`, so what it may reach is the agent's
``network`` settings (deny by default). It also refuses the headers that would let a model
steer the connection itself rather than the request (``Host``, hop-by-hop, ``Proxy-*``,
framing), which the client sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gateway.tools.base import (
    HttpFailureError,
    NetworkRefusedError,
    ToolContext,
    ToolResult,
)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
# The answer's headers a model can use; the rest would cost tokens for nothing.
REPLY_HEADERS = ("content-type", "content-length", "location", "retry-after")
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    }
)

PARAMETERS: Mapping[str, Any] = MappingProxyType(
    {
        "type": "object",
        "properties": {
            "method": {"type": "string", "enum": list(METHODS), "default": "GET"},
            "url": {"type": "string", "description": "An http:// or https:// URL."},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Request headers (not Host, Connection, Proxy-* or framing).",
            },
            "body": {"type": "string", "description": "The request body, sent as UTF-8."},
        },
        "required": ["url"],
        "additionalProperties": False,
    }
)


def forbidden_header(headers: Mapping[str, str]) -> str | None:
    """The first header in ``headers`` a tool call may not set, or None."""
    for name in headers:
        lower = name.lower()
        if lower in FORBIDDEN_HEADERS or lower.startswith("proxy-"):
            return name
    return None


class HttpRequestTool:
    """Send an HTTP request and return its status, main headers and (capped) body as text."""

    name = "http_request"
    description = (
        "Send an HTTP request and return the response's status, content type and body (as "
        "text, possibly truncated). Only hosts the agent is allowed to reach can be fetched."
    )
    parameters = PARAMETERS

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        """Send the request ``arguments`` describe through ``context.http``.

        Returns:
            ``{"status", "headers", "body", "truncated", "url"}``; or, with ``is_error``, why
            the request was refused (a header, the network policy) or failed.
        """
        method = str(arguments.get("method", "GET")).upper()
        url = str(arguments["url"])
        headers = {str(k): str(v) for k, v in arguments.get("headers", {}).items()}
        body = arguments.get("body")
        bad = forbidden_header(headers)
        if bad is not None:
            return ToolResult(f"the header {bad!r} may not be set", is_error=True)
        try:
            reply = await context.http.request(
                method,
                url,
                headers=headers,
                body=None if body is None else str(body).encode(),
                timeout_s=context.time_left(),
            )
        except (NetworkRefusedError, HttpFailureError) as exc:
            context.log.info("http_request %s %s: %s", method, url, exc)
            return ToolResult(str(exc), is_error=True)
        return ToolResult(
            {
                "status": reply.status,
                "headers": {k: reply.headers[k] for k in REPLY_HEADERS if k in reply.headers},
                "body": reply.body.decode("utf-8", errors="replace"),
                "truncated": reply.truncated,
                "url": reply.url,
            }
        )
