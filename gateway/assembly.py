"""Assembly: the app's objects built from the settings and the plugins, in one place.

Settings and registries in; the model catalog (backends, providers, strategies), the response
cache's tiers and the :class:`~gateway.state.GatewayState` out. Nothing is started here (no
sockets, no tasks): ``gateway check`` builds the same objects to validate a config. Every
problem is a :class:`~gateway.config_loader.ConfigError` naming the file and the field, which is
why this module, and not :mod:`gateway.routing`, knows the config loader.
"""

from __future__ import annotations

import inspect
from typing import Any

import pluggy

from gateway.agents.runtime import build_agents
from gateway.auth import Authenticator
from gateway.background import Background
from gateway.cache.coalesce import Coalescer
from gateway.cache.tiered import TieredCache
from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.config_loader import ConfigError
from gateway.control.base import ControlStore
from gateway.governance.runtime import build_governance
from gateway.plugins import (
    Registries,
    build_registered,
    collect_registries,
    make_plugin_manager,
)
from gateway.providers.base import BackendSpec, ProviderContext
from gateway.routing.backends import Backend, ModelCatalog, ModelGroup
from gateway.routing.health import BreakerSettings
from gateway.routing.retry import RetryBudget
from gateway.scheduling.admission import Admissions
from gateway.settings import BackendSettings, ModelGroupSettings, Settings
from gateway.state import GatewayState
from gateway.stores.base import ResponseStore
from gateway.telemetry.metrics import GatewayMetrics
from gateway.telemetry.tracing import Tracer


class CatalogBuilder:
    """Builds backends and model groups with the registered providers and strategies.

    Args:
        registries: what the plugins registered.
        context: the providers' shared resources.
        clock: the time source of breakers and latency averages.
    """

    def __init__(
        self, registries: Registries, context: ProviderContext, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.registries = registries
        self.context = context
        self.clock = clock

    def backend(
        self,
        bs: BackendSettings,
        gs: ModelGroupSettings,
        index: int,
        source: str,
        where: str = "",
    ) -> Backend:
        """The ``index``-th backend of group ``gs`` (``where`` prefixes error field paths).

        Raises:
            ConfigError: an unknown provider, or options its factory rejected.
        """
        registries = self.registries
        prefix = f"{where}." if where else ""
        factory = registries.providers.get(bs.provider)
        if factory is None:
            raise ConfigError(
                source,
                f"{prefix}provider",
                f"unknown provider `{bs.provider}`; registered: "
                f"{', '.join(registries.providers.names()) or 'none'}",
            )
        spec = BackendSpec(
            name=bs.name or f"{gs.name}-{index}",
            group=gs.name,
            url=bs.url.rstrip("/"),
            model=bs.model or gs.name,
            api_key=bs.api_key,
            weight=bs.weight,
            timeouts=bs.timeouts or gs.timeouts,
            options=bs.options,
            input_price=bs.price.input_per_mtok if bs.price else 0.0,
            output_price=bs.price.output_per_mtok if bs.price else 0.0,
            context_window=bs.context_window,
            local=bs.local,
            provider=bs.provider,
        )
        try:
            provider = factory(spec, self.context)
        except (TypeError, ValueError) as exc:
            raise ConfigError(source, where or None, str(exc)) from None
        b = gs.breaker
        breaker = BreakerSettings(
            b.consecutive_failures, b.failure_rate, b.window, b.min_requests, b.cooldown_s
        )
        return Backend(spec, provider, breaker, self.clock)

    def group(self, gs: ModelGroupSettings, gi: int, source: str) -> ModelGroup:
        """Model group ``gs`` (the ``gi``-th of its file) with its backends and strategy.

        Raises:
            ConfigError: see :meth:`backend`, or an unknown strategy or bad parameters.
        """
        backends = [
            self.backend(bs, gs, bi, source, f"models[{gi}].backends[{bi}]")
            for bi, bs in enumerate(gs.backends)
        ]
        strategy_factory = self.registries.routing_strategies.get(gs.routing.strategy)
        if strategy_factory is None:
            raise ConfigError(
                source,
                f"models[{gi}].routing.strategy",
                f"unknown routing strategy `{gs.routing.strategy}`; registered: "
                f"{', '.join(self.registries.routing_strategies.names()) or 'none'}",
            )
        try:
            strategy = strategy_factory(**gs.routing.params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(source, f"models[{gi}].routing.params", str(exc)) from None
        budget = RetryBudget(gs.retry.budget_ratio, gs.retry.budget_min)
        return ModelGroup(gs.name, gs, backends, strategy, retry_budget=budget)

    def catalog(self, settings: Settings) -> ModelCatalog:
        """Every model group of ``settings``.

        Raises:
            ConfigError: see :meth:`group`.
        """
        return ModelCatalog(
            [self.group(gs, gi, settings.source) for gi, gs in enumerate(settings.models)],
            self.clock,
        )


def _takes_clock(factory: Any) -> bool:
    """Whether a cache-backend factory accepts the ``clock`` keyword (built-in ``memory`` does;
    others, such as Redis whose TTLs live in the server, get their options only)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "clock" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
    )


def build_cache(
    settings: Settings,
    registries: Registries,
    metrics: GatewayMetrics,
    clock: Clock = SYSTEM_CLOCK,
) -> TieredCache | None:
    """The response cache's tiers, when some model group caches; every tier that reads time
    (and the tiers' own bookkeeping) reads ``clock``.

    Raises:
        ConfigError: an unknown cache backend or options it rejects (naming the field).
    """
    if not any(g.cache.enabled for g in settings.models):
        return None
    tiers = []
    for i, tier in enumerate(settings.cache.tiers):
        factory = registries.cache_backends.get(tier.backend)
        if factory is None:
            raise ConfigError(
                settings.source,
                f"cache.tiers[{i}].backend",
                f"unknown cache backend `{tier.backend}`; registered: "
                f"{', '.join(registries.cache_backends.names()) or 'none'}",
            )
        try:
            extra = {"clock": clock} if _takes_clock(factory) else {}
            tiers.append((tier.backend, factory(**tier.options, **extra)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(settings.source, f"cache.tiers[{i}].options", str(exc)) from None
    return TieredCache(
        tiers,
        settings.cache.retry_after_s,
        on_error=lambda name: metrics.child(metrics.cache_errors, name).inc(),
        clock=clock,
    )


def build_store(settings: Settings, registries: Registries, clock: Clock) -> ResponseStore:
    """The response store (built, not opened: stores connect on first use).

    Raises:
        ConfigError: an unknown store or options it rejects (naming the field).
    """
    config = settings.store
    store: ResponseStore = build_registered(
        registries.response_stores,
        config.backend,
        config.options,
        settings.source,
        "store",
        clock=clock,
    )
    return store


def build_control_store(settings: Settings, registries: Registries) -> ControlStore | None:
    """The shared store of ``control.store`` (built, not connected), or None.

    Raises:
        ConfigError: an unknown store or options it rejects (naming the field).
    """
    choice = settings.control.store
    if choice is None:
        return None
    store: ControlStore = build_registered(
        registries.control_stores, choice.backend, choice.options, settings.source, "control.store"
    )
    return store


def build_state(
    settings: Settings,
    plugin_manager: pluggy.PluginManager | None = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> GatewayState:
    """Load plugins and build everything the app needs, without starting anything.

    Raises:
        PluginError: a plugin failed to load or register.
        ConfigError: the settings name an unknown provider or strategy, or bad options.
    """
    pm = plugin_manager or make_plugin_manager(settings.plugins.disabled)
    registries = collect_registries(pm)
    providers = ProviderContext()
    builder = CatalogBuilder(registries, providers, clock)
    catalog = builder.catalog(settings)
    metrics = GatewayMetrics()
    background = Background(drain_s=settings.server.shutdown_grace_s)
    governance = build_governance(settings, registries, catalog, metrics, clock, background)
    agents = build_agents(settings, registries, catalog, governance.prices, metrics)
    return GatewayState(
        settings=settings,
        plugin_manager=pm,
        registries=registries,
        catalog=catalog,
        builder=builder,
        providers=providers,
        metrics=metrics,
        auth=Authenticator(
            settings.auth.api_keys, settings.auth.master_key, virtual=governance.directory
        ),
        background=background,
        clock=clock,
        cache=build_cache(settings, registries, metrics, clock),
        store=build_store(settings, registries, clock),
        coalescer=Coalescer(background.spawn),
        governance=governance,
        agents=agents,
        control_store=build_control_store(settings, registries),
        admissions=build_admissions(settings, registries, catalog, metrics),
        tracing=build_tracer(settings, registries),
    )


def build_admissions(
    settings: Settings, registries: Registries, catalog: ModelCatalog, metrics: GatewayMetrics
) -> Admissions | None:
    """The admission control of the groups with a ``scheduling:`` section (None: no group
    has one, and the request path pays nothing).

    Raises:
        ConfigError: an unknown scheduler, or options it rejects.
    """
    if not any(g.settings.scheduling is not None for g in catalog.groups):
        return None
    from gateway.scheduling.metrics import SchedulingMetrics

    return Admissions.build(
        catalog, registries.schedulers, settings.source, SchedulingMetrics(metrics.registry)
    )


def build_tracer(settings: Settings, registries: Registries) -> Tracer | None:
    """The tracer of ``tracing:`` (None when it is off: OpenTelemetry is then never imported,
    and the request path pays one None check per stage that traces).

    Raises:
        ConfigError: OpenTelemetry is not installed, or the exporter is unknown or rejects
            its options.
    """
    if not settings.tracing.enabled:
        return None
    try:
        from gateway.telemetry.otel import OtelTracer
    except ImportError as exc:
        raise ConfigError(
            settings.source,
            "tracing.enabled",
            f"tracing needs the `otel` extra (pip install 'gateway[otel]'): {exc}",
        ) from None
    return OtelTracer.build(settings.tracing, registries, settings.source)
