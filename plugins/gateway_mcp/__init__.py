"""Built-in plugin: the ``mcp`` tool source (the tools of an MCP server; the ``mcp`` extra)."""
