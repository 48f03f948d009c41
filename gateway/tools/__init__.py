"""Tools: the contract of a tool and of a source of tools (``gateway.tools.base``)."""
