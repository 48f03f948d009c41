"""Built-in plugin: the ``vllm`` provider, for any OpenAI-compatible server.

vLLM, SGLang, TGI, llama.cpp's server or another gateway: requests are relayed as bytes. Without
a config file, the servers ``GATEWAY_VLLM_URLS`` names are served.
"""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import RegisterDefaultSource, RegisterProvider
from gateway_vllm.defaults import VllmUrlsSource
from gateway_vllm.metrics import parse_engine_metrics
from gateway_vllm.provider import OpenAICompatibleProvider

__all__ = ["OpenAICompatibleProvider", "parse_engine_metrics"]


@hookimpl
def register_providers(register: RegisterProvider) -> None:
    """Register ``vllm`` (and ``openai_compatible``, the same relay under a neutral name)."""
    register("vllm", OpenAICompatibleProvider)
    register("openai_compatible", OpenAICompatibleProvider)


@hookimpl
def register_default_sources(register: RegisterDefaultSource) -> None:
    """Register ``vllm_urls``: the servers in ``GATEWAY_VLLM_URLS``."""
    register("vllm_urls", VllmUrlsSource())
