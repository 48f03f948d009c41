"""Built-in plugin: the ``anthropic`` provider, through Anthropic's official SDK.

Without a config file, ``ANTHROPIC_API_KEY`` (with ``ANTHROPIC_BASE_URL``) serves the models in
``GATEWAY_ANTHROPIC_MODELS`` (comma-separated), else those the API lists.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway import hookimpl
from gateway.defaults import ApiKeySource
from gateway.hookspecs import RegisterDefaultSource, RegisterProvider
from gateway_anthropic.provider import DEFAULT_URL, AnthropicProvider

API_VERSION = "2023-06-01"


def _listing_headers(key: str) -> Mapping[str, str]:
    return {"x-api-key": key, "anthropic-version": API_VERSION}


@hookimpl
def register_providers(register: RegisterProvider) -> None:
    """Register ``anthropic``."""
    register("anthropic", AnthropicProvider)


@hookimpl
def register_default_sources(register: RegisterDefaultSource) -> None:
    """Register ``anthropic_key``: Anthropic's models when ``ANTHROPIC_API_KEY`` is set."""
    register(
        "anthropic_key",
        ApiKeySource(
            provider="anthropic",
            key_env="ANTHROPIC_API_KEY",
            url_env="ANTHROPIC_BASE_URL",
            models_env="GATEWAY_ANTHROPIC_MODELS",
            default_url=DEFAULT_URL,
            listing_headers=_listing_headers,
        ),
    )
