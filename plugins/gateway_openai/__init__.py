"""Built-in plugin: the ``openai`` provider, through OpenAI's official SDK.

Without a config file, ``OPENAI_API_KEY`` (with ``OPENAI_BASE_URL``) serves the models in
``GATEWAY_OPENAI_MODELS`` (comma-separated), else those the API lists.
"""

from __future__ import annotations

from gateway import hookimpl
from gateway.defaults import ApiKeySource
from gateway.hookspecs import RegisterDefaultSource, RegisterProvider
from gateway_openai.provider import DEFAULT_URL, OpenAIProvider


@hookimpl
def register_providers(register: RegisterProvider) -> None:
    """Register ``openai`` (OpenAI, Azure OpenAI and other OpenAI-compatible clouds)."""
    register("openai", OpenAIProvider)


@hookimpl
def register_default_sources(register: RegisterDefaultSource) -> None:
    """Register ``openai_key``: OpenAI's models when ``OPENAI_API_KEY`` is set."""
    register(
        "openai_key",
        ApiKeySource(
            provider="openai",
            key_env="OPENAI_API_KEY",
            url_env="OPENAI_BASE_URL",
            models_env="GATEWAY_OPENAI_MODELS",
            default_url=DEFAULT_URL.removesuffix("/v1"),
        ),
    )
