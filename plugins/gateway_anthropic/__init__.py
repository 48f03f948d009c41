"""Built-in plugin: the ``anthropic`` provider, through Anthropic's official SDK."""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import Register
from gateway_anthropic.provider import AnthropicProvider


@hookimpl
def register_providers(register: Register) -> None:
    """Register ``anthropic``."""
    register("anthropic", AnthropicProvider)
