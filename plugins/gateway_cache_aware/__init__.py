"""Built-in plugin: the ``cache_aware`` routing strategy (prefix-cache affinity for vLLM)."""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import RegisterRoutingStrategy
from gateway_cache_aware.strategy import CacheAwareStrategy


@hookimpl
def register_routing_strategies(register: RegisterRoutingStrategy) -> None:
    """Register ``cache_aware``."""
    register("cache_aware", CacheAwareStrategy)
