"""Built-in plugin: the ``vllm`` provider, for any OpenAI-compatible server.

vLLM, SGLang, TGI, llama.cpp's server or another gateway: requests are relayed as bytes.
"""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import Register
from gateway_vllm.provider import OpenAICompatibleProvider


@hookimpl
def register_providers(register: Register) -> None:
    """Register ``vllm`` (and ``openai_compatible``, the same relay under a neutral name)."""
    register("vllm", OpenAICompatibleProvider)
    register("openai_compatible", OpenAICompatibleProvider)
