"""Built-in plugin: the ``vllm_load`` routing strategy (engine metrics scraped from vLLM)."""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import RegisterRoutingStrategy
from gateway_vllm_load.strategy import VllmLoadStrategy


@hookimpl
def register_routing_strategies(register: RegisterRoutingStrategy) -> None:
    """Register ``vllm_load``."""
    register("vllm_load", VllmLoadStrategy)
