"""The per-app state every handler and plugin works with (no module-level singletons)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pluggy

from gateway.auth import Authenticator
from gateway.cache.coalesce import Coalescer
from gateway.cache.tiered import TieredCache
from gateway.plugins import Registries
from gateway.providers.base import ProviderContext
from gateway.routing.backends import ModelCatalog
from gateway.settings import Settings
from gateway.telemetry.metrics import GatewayMetrics


@dataclass(slots=True)
class GatewayState:
    """What one gateway app holds; handed to plugins' ``startup``/``shutdown`` hooks.

    Attributes:
        settings: the loaded configuration.
        plugin_manager: the pluggy manager (for lifecycle hooks only).
        registries: everything the plugins registered.
        catalog: model groups, backends and strategies.
        providers: shared resources of the providers (the HTTP session).
        metrics: the app's Prometheus metrics.
        auth: the API-key checker.
        cache: the response cache's tiers (None when no model group caches).
        coalescer: identical cacheable requests in flight, sharing one upstream call.
    """

    settings: Settings
    plugin_manager: pluggy.PluginManager
    registries: Registries
    catalog: ModelCatalog
    providers: ProviderContext
    metrics: GatewayMetrics
    auth: Authenticator
    cache: TieredCache | None = None
    coalescer: Coalescer = field(default_factory=Coalescer)
