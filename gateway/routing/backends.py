"""Backends, model groups and the model catalog, built once from the settings and the plugins."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.config_loader import ConfigError
from gateway.errors import ModelNotFoundError
from gateway.plugins import Registries
from gateway.providers.base import BackendSpec, Provider, ProviderContext
from gateway.routing.base import EngineMetrics, RoutingStrategy
from gateway.routing.health import BackendHealth, BreakerSettings
from gateway.routing.retry import RetryBudget
from gateway.settings import BackendSettings, ModelGroupSettings, Settings


class Backend:
    """One upstream deployment and the live state the gateway keeps about it.

    Satisfies :class:`gateway.routing.base.BackendView`.
    """

    __slots__ = (
        "draining",
        "engine",
        "group",
        "health",
        "in_flight",
        "model",
        "name",
        "provider",
        "spec",
        "weight",
    )

    def __init__(
        self,
        spec: BackendSpec,
        provider: Provider,
        breaker: BreakerSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.spec = spec
        self.provider = provider
        self.name = spec.name
        self.group = spec.group
        self.model = spec.model
        self.weight = spec.weight
        self.in_flight = 0
        self.health = BackendHealth(breaker, clock)
        self.engine: EngineMetrics | None = None
        self.draining = False

    @property
    def available(self) -> bool:
        """Routable now: healthy, breaker admitting, not draining."""
        return not self.draining and self.health.healthy and self.health.admits()

    @property
    def latency_s(self) -> float | None:
        return self.health.latency.value

    @property
    def ttft_s(self) -> float | None:
        return self.health.ttft.value

    @property
    def error_rate(self) -> float:
        return self.health.error_rate

    @property
    def breaker(self) -> str:
        return self.health.current_state().value

    @property
    def input_price(self) -> float:
        return self.spec.input_price

    @property
    def output_price(self) -> float:
        return self.spec.output_price

    @property
    def context_window(self) -> int:
        return self.spec.context_window


@dataclass(slots=True)
class ModelGroup:
    """A public model name, its aliases, its backends and its routing strategy."""

    name: str
    settings: ModelGroupSettings
    backends: list[Backend]
    strategy: RoutingStrategy
    created: int = field(default_factory=lambda: int(time.time()))
    retry_budget: RetryBudget = field(default_factory=RetryBudget)

    def candidates(self, exclude: Collection[Backend] = ()) -> list[Backend]:
        """Available backends, less ``exclude`` (those already tried)."""
        return [b for b in self.backends if b.available and b not in exclude]

    @property
    def ready(self) -> bool:
        """Whether some backend could take a request now."""
        return any(b.available for b in self.backends)


class ModelCatalog:
    """Resolves the ``model`` a client sent to its :class:`ModelGroup`."""

    def __init__(self, groups: list[ModelGroup], clock: Clock = SYSTEM_CLOCK) -> None:
        self.groups = groups
        self.clock = clock  # what the backends' health reads
        self._by_name: dict[str, ModelGroup] = {}
        for group in groups:
            for name in (group.name, *group.settings.aliases):
                self._by_name[name] = group

    def add(self, group: ModelGroup) -> None:
        """Serve a new group under its name and aliases."""
        self.groups = [*self.groups, group]
        for name in (group.name, *group.settings.aliases):
            self._by_name[name] = group

    def resolve(self, model: str) -> ModelGroup:
        """The group serving ``model``.

        Raises:
            ModelNotFoundError: no group or alias has that name.
        """
        group = self._by_name.get(model)
        if group is None:
            raise ModelNotFoundError(model)
        return group

    def public_names(self) -> list[tuple[str, ModelGroup]]:
        """Every servable name (groups and aliases) with its group, in config order."""
        return list(self._by_name.items())


def build_backend(
    bs: BackendSettings,
    gs: ModelGroupSettings,
    index: int,
    registries: Registries,
    context: ProviderContext,
    source: str,
    where: str = "",
    clock: Clock = SYSTEM_CLOCK,
) -> Backend:
    """One backend of group ``gs`` from its settings (``where`` prefixes error field paths).

    Raises:
        ConfigError: an unknown provider, or options its factory rejected.
    """
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
        input_price=bs.price.input_per_mtok,
        output_price=bs.price.output_per_mtok,
        context_window=bs.context_window,
    )
    try:
        provider = factory(spec, context)
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, where or None, str(exc)) from None
    b = gs.breaker
    breaker = BreakerSettings(
        b.consecutive_failures, b.failure_rate, b.window, b.min_requests, b.cooldown_s
    )
    return Backend(spec, provider, breaker, clock)


def build_catalog(
    settings: Settings,
    registries: Registries,
    context: ProviderContext,
    clock: Clock = SYSTEM_CLOCK,
) -> ModelCatalog:
    """Build providers and strategies for every model group.

    Raises:
        ConfigError: an unknown provider or strategy, or options its factory rejected; the
            message names the config file and field.
    """
    return ModelCatalog(
        [
            build_group(gs, gi, registries, context, settings.source, clock)
            for gi, gs in enumerate(settings.models)
        ],
        clock,
    )


def build_group(
    gs: ModelGroupSettings,
    gi: int,
    registries: Registries,
    context: ProviderContext,
    source: str,
    clock: Clock = SYSTEM_CLOCK,
) -> ModelGroup:
    """Model group ``gs`` (the ``gi``-th of its file) with its backends and strategy.

    Raises:
        ConfigError: see :func:`build_catalog`.
    """
    backends = [
        build_backend(
            bs, gs, bi, registries, context, source, f"models[{gi}].backends[{bi}]", clock
        )
        for bi, bs in enumerate(gs.backends)
    ]
    strategy_factory = registries.routing_strategies.get(gs.routing.strategy)
    if strategy_factory is None:
        raise ConfigError(
            source,
            f"models[{gi}].routing.strategy",
            f"unknown routing strategy `{gs.routing.strategy}`; registered: "
            f"{', '.join(registries.routing_strategies.names()) or 'none'}",
        )
    try:
        strategy = strategy_factory(**gs.routing.params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, f"models[{gi}].routing.params", str(exc)) from None
    budget = RetryBudget(gs.retry.budget_ratio, gs.retry.budget_min)
    return ModelGroup(gs.name, gs, backends, strategy, retry_budget=budget)
