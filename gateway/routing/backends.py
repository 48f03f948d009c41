"""Backends, model groups and the model catalog: the live state routing works on.

They are built from the settings and the plugins by :mod:`gateway.assembly`; this module knows
neither the config loader nor the plugin registries.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.errors import ModelNotFoundError
from gateway.providers.base import BackendSpec, Provider
from gateway.routing.base import EngineMetrics, RoutingStrategy
from gateway.routing.health import BackendHealth, BreakerSettings
from gateway.routing.retry import RetryBudget
from gateway.settings import ModelGroupSettings


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
        """Available backends, less ``exclude`` (those already tried); those the control
        plane's health sweep hinted down only when no other is left (tried last, never
        excluded: see :mod:`gateway.routing.health`)."""
        available = [b for b in self.backends if b.available and b not in exclude]
        return [b for b in available if not b.health.hinted_down] or available

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
