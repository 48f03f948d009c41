"""The per-app state every handler and plugin works with (no module-level singletons)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pluggy

from gateway.auth import Authenticator
from gateway.background import Background
from gateway.cache.coalesce import Coalescer
from gateway.cache.tiered import TieredCache
from gateway.clock import Clock
from gateway.plugins import Registries
from gateway.providers.base import ProviderContext
from gateway.routing.backends import ModelCatalog
from gateway.settings import Settings
from gateway.stores.base import ResponseStore
from gateway.telemetry.metrics import GatewayMetrics

if TYPE_CHECKING:
    from gateway.agents.runtime import AgentRuntime
    from gateway.assembly import CatalogBuilder
    from gateway.control.base import ControlStore
    from gateway.control.follow import ConfigFollower
    from gateway.dashboard.feed import DashboardFeed
    from gateway.governance.runtime import Governance
    from gateway.scheduling.admission import Admissions
    from gateway.telemetry.tracing import Tracer


@dataclass(slots=True)
class GatewayState:
    """What one gateway app holds; handed to plugins' ``startup``/``shutdown`` hooks.

    Attributes:
        settings: the loaded configuration.
        plugin_manager: the pluggy manager (for lifecycle hooks only).
        registries: everything the plugins registered.
        catalog: model groups, backends and strategies.
        builder: builds backends and groups at run time (admin API, reloads).
        providers: shared resources of the providers (the HTTP session).
        metrics: the app's Prometheus metrics.
        auth: turns request headers into the caller's Principal.
        background: the lifespan's task group and off-path write queue.
        clock: the app's time source.
        cache: the response cache's tiers (None when no model group caches).
        store: stored responses and chat completions.
        coalescer: identical cacheable requests in flight, sharing one upstream call.
        governance: keys, limits, usage, budgets and cost policies (its ``governor`` is the
            pipeline's governance stage).
        agents: agents, workflows, server-side tools and guardrail chains (their runners and
            chains are the pipeline's).
        control_store: the shared store of ``control.store`` (None when not configured).
        config_follower: applies each config version published to it (None unless
            ``control.store`` is set and ``control.follow_config`` is on).
        admissions: the admission control of the model groups with a ``scheduling:`` section
            (None: none built).
        tracing: makes the requests' spans (None: ``tracing.enabled`` is off).
        dashboard: the live page's feed (``/dashboard``; None until the app is built).
    """

    settings: Settings
    plugin_manager: pluggy.PluginManager
    registries: Registries
    catalog: ModelCatalog
    builder: CatalogBuilder
    providers: ProviderContext
    metrics: GatewayMetrics
    auth: Authenticator
    background: Background
    clock: Clock
    cache: TieredCache | None
    store: ResponseStore
    coalescer: Coalescer
    governance: Governance
    agents: AgentRuntime
    control_store: ControlStore | None = None
    config_follower: ConfigFollower | None = None
    admissions: Admissions | None = None
    tracing: Tracer | None = None
    dashboard: DashboardFeed | None = None
