"""Backends, model groups and the model catalog, built once from the settings and the plugins."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.config_loader import ConfigError
from gateway.errors import ModelNotFoundError
from gateway.plugins import Registries
from gateway.providers.base import BackendSpec, Provider, ProviderContext
from gateway.routing.base import RoutingStrategy
from gateway.settings import ModelGroupSettings, Settings

# How long a backend that refused a connection is skipped before it is tried again.
DOWN_COOLDOWN_S = 5.0


class Backend:
    """One upstream deployment and the live state the gateway keeps about it.

    Satisfies :class:`gateway.routing.base.BackendView`.
    """

    __slots__ = ("_down_until", "group", "in_flight", "model", "name", "provider", "spec", "weight")

    def __init__(self, spec: BackendSpec, provider: Provider) -> None:
        self.spec = spec
        self.provider = provider
        self.name = spec.name
        self.group = spec.group
        self.model = spec.model
        self.weight = spec.weight
        self.in_flight = 0
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        """False while the backend is known to be down (it refused a connection recently)."""
        return self._down_until == 0.0 or time.monotonic() >= self._down_until

    def mark_down(self, cooldown_s: float = DOWN_COOLDOWN_S) -> None:
        """Skip this backend for ``cooldown_s`` seconds."""
        self._down_until = time.monotonic() + cooldown_s

    def mark_up(self) -> None:
        """The backend answered: route to it normally."""
        self._down_until = 0.0


@dataclass(slots=True)
class ModelGroup:
    """A public model name, its aliases, its backends and its routing strategy."""

    name: str
    settings: ModelGroupSettings
    backends: list[Backend]
    strategy: RoutingStrategy
    created: int = field(default_factory=lambda: int(time.time()))

    def candidates(self) -> list[Backend]:
        """Backends not known to be down, or all of them when every one is."""
        up = [b for b in self.backends if b.available]
        return up if up else list(self.backends)


class ModelCatalog:
    """Resolves the ``model`` a client sent to its :class:`ModelGroup`."""

    def __init__(self, groups: list[ModelGroup]) -> None:
        self.groups = groups
        self._by_name: dict[str, ModelGroup] = {}
        for group in groups:
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


def build_catalog(
    settings: Settings, registries: Registries, context: ProviderContext
) -> ModelCatalog:
    """Build providers and strategies for every model group.

    Raises:
        ConfigError: an unknown provider or strategy, or options its factory rejected; the
            message names the config file and field.
    """
    groups = []
    for gi, gs in enumerate(settings.models):
        backends = []
        for bi, bs in enumerate(gs.backends):
            where = f"models[{gi}].backends[{bi}]"
            factory = registries.providers.get(bs.provider)
            if factory is None:
                raise ConfigError(
                    settings.source,
                    f"{where}.provider",
                    f"unknown provider `{bs.provider}`; registered: "
                    f"{', '.join(registries.providers.names()) or 'none'}",
                )
            spec = BackendSpec(
                name=bs.name or f"{gs.name}-{bi}",
                group=gs.name,
                url=bs.url.rstrip("/"),
                model=bs.model or gs.name,
                api_key=bs.api_key,
                weight=bs.weight,
                timeouts=bs.timeouts or gs.timeouts,
                options=bs.options,
            )
            try:
                provider = factory(spec, context)
            except (TypeError, ValueError) as exc:
                raise ConfigError(settings.source, where, str(exc)) from None
            backends.append(Backend(spec, provider))
        strategy_factory = registries.routing_strategies.get(gs.routing.strategy)
        if strategy_factory is None:
            raise ConfigError(
                settings.source,
                f"models[{gi}].routing.strategy",
                f"unknown routing strategy `{gs.routing.strategy}`; registered: "
                f"{', '.join(registries.routing_strategies.names()) or 'none'}",
            )
        try:
            strategy = strategy_factory(**gs.routing.params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(settings.source, f"models[{gi}].routing.params", str(exc)) from None
        groups.append(ModelGroup(gs.name, gs, backends, strategy))
    return ModelCatalog(groups)
