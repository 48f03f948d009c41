"""gateway: an OpenAI-compatible, plugin-based model-serving gateway.

The names a plugin author needs are importable from here (``from gateway import hookimpl,
Provider``); see docs/plugins.md. Only ``hookimpl`` is imported eagerly: every plugin module
imports this package, and loading the contracts (aiohttp, litestar) for each would slow the CLI
and invite import cycles, so the rest load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.hookspecs import hookimpl

if TYPE_CHECKING:
    from gateway.agents.base import Agent, AgentEvent, ModelClient
    from gateway.cache.base import CacheBackend
    from gateway.commands import Command
    from gateway.cost.base import CostPolicy
    from gateway.defaults import DefaultSource, EmbeddedBackends, EmbeddedDefault
    from gateway.errors import (
        GatewayError,
        InvalidRequestError,
        RateLimitError,
        UpstreamConnectError,
        UpstreamConnectionError,
        UpstreamError,
        UpstreamStatusError,
        UpstreamTimeoutError,
        UpstreamUnavailableError,
    )
    from gateway.governance.sinks import UsageRecord, UsageSink
    from gateway.guardrails.base import Guardrail, GuardrailContext, GuardrailVerdict
    from gateway.identity import Principal
    from gateway.providers.base import (
        BackendSpec,
        Endpoint,
        EngineMetricsSource,
        HealthChecked,
        Provider,
        ProviderContext,
        ServesEndpoints,
        TokenCounter,
        UpstreamRequest,
        UpstreamResponse,
        UpstreamStream,
    )
    from gateway.providers.http import HttpRelay
    from gateway.routing.base import (
        BackendView,
        EngineMetrics,
        RouteRequest,
        RoutingStrategy,
        UsesEngineMetrics,
    )
    from gateway.scheduling.base import AdmissionTicket, Scheduler
    from gateway.stores.base import ResponseStore, StoredObject, StoredPage
    from gateway.tools.base import Tool, ToolContext, ToolResult, ToolSource

__version__ = "0.1.0"

_LAZY = {
    "gateway.agents.base": ("Agent", "AgentEvent", "ModelClient"),
    "gateway.cache.base": ("CacheBackend",),
    "gateway.commands": ("Command",),
    "gateway.cost.base": ("CostPolicy",),
    "gateway.defaults": ("DefaultSource", "EmbeddedBackends", "EmbeddedDefault"),
    "gateway.errors": (
        "GatewayError",
        "InvalidRequestError",
        "RateLimitError",
        "UpstreamConnectError",
        "UpstreamConnectionError",
        "UpstreamError",
        "UpstreamStatusError",
        "UpstreamTimeoutError",
        "UpstreamUnavailableError",
    ),
    "gateway.governance.sinks": ("UsageRecord", "UsageSink"),
    "gateway.guardrails.base": ("Guardrail", "GuardrailContext", "GuardrailVerdict"),
    "gateway.identity": ("Principal",),
    "gateway.providers.base": (
        "BackendSpec",
        "EngineMetricsSource",
        "Endpoint",
        "HealthChecked",
        "Provider",
        "ProviderContext",
        "ServesEndpoints",
        "TokenCounter",
        "UpstreamRequest",
        "UpstreamResponse",
        "UpstreamStream",
    ),
    "gateway.providers.http": ("HttpRelay",),
    "gateway.routing.base": (
        "BackendView",
        "EngineMetrics",
        "RouteRequest",
        "RoutingStrategy",
        "UsesEngineMetrics",
    ),
    "gateway.scheduling.base": ("AdmissionTicket", "Scheduler"),
    "gateway.stores.base": ("ResponseStore", "StoredObject", "StoredPage"),
    "gateway.tools.base": ("Tool", "ToolContext", "ToolResult", "ToolSource"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "AdmissionTicket",
    "Agent",
    "AgentEvent",
    "BackendSpec",
    "BackendView",
    "CacheBackend",
    "Command",
    "CostPolicy",
    "DefaultSource",
    "EmbeddedBackends",
    "EmbeddedDefault",
    "Endpoint",
    "EngineMetrics",
    "EngineMetricsSource",
    "GatewayError",
    "Guardrail",
    "GuardrailContext",
    "GuardrailVerdict",
    "HealthChecked",
    "HttpRelay",
    "InvalidRequestError",
    "ModelClient",
    "Principal",
    "Provider",
    "ProviderContext",
    "RateLimitError",
    "ResponseStore",
    "RouteRequest",
    "RoutingStrategy",
    "Scheduler",
    "ServesEndpoints",
    "StoredObject",
    "StoredPage",
    "TokenCounter",
    "Tool",
    "ToolContext",
    "ToolResult",
    "ToolSource",
    "UpstreamConnectError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamResponse",
    "UpstreamStatusError",
    "UpstreamStream",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "UsageRecord",
    "UsageSink",
    "UsesEngineMetrics",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
