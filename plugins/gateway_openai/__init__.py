"""Built-in plugin: the ``openai`` provider, through OpenAI's official SDK."""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import Register
from gateway_openai.provider import OpenAIProvider


@hookimpl
def register_providers(register: Register) -> None:
    """Register ``openai`` (OpenAI, Azure OpenAI and other OpenAI-compatible clouds)."""
    register("openai", OpenAIProvider)
