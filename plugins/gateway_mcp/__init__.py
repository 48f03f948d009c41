"""Built-in plugin: the ``mcp`` tool source (the tools of an MCP server; the ``mcp`` extra).

The MCP SDK is an optional dependency (``pip install 'gateway[mcp]'``), so this module imports
without it: the SDK is loaded when a configured ``tool_sources`` entry builds its source, and
its absence is then a config error naming the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway import hookimpl
from gateway.hookspecs import RegisterToolSource

if TYPE_CHECKING:
    from gateway_mcp.source import McpToolSource

MISSING_SDK = "the mcp tool source needs the mcp package: pip install 'gateway[mcp]'"


def build_mcp_source(**options: Any) -> McpToolSource:
    """The ``mcp`` factory: an :class:`~gateway_mcp.source.McpToolSource` for ``options``.

    Raises:
        ValueError: the MCP SDK is not installed, or an option is unusable.
        TypeError: an unknown option.
    """
    try:
        from gateway_mcp.source import McpToolSource
    except ModuleNotFoundError as error:
        if error.name is None or error.name.partition(".")[0] not in ("mcp", "mcp_types"):
            raise
        raise ValueError(MISSING_SDK) from error
    return McpToolSource(**options)


@hookimpl
def register_tool_sources(register: RegisterToolSource) -> None:
    """Register the ``mcp`` tool source."""
    register("mcp", build_mcp_source)
