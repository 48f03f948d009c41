"""Plugin loading and the typed facade over the registration hooks.

Built-in plugins are declared in this distribution's ``gateway`` entry-point group exactly as a
third-party ``gateway-<name>`` distribution declares its own, so both load through one path.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import pluggy

from gateway import hookspecs
from gateway.commands import Command
from gateway.defaults import DefaultSource, EmbeddedDefault
from gateway.tools.base import Tool

if TYPE_CHECKING:
    from litestar import Router
    from litestar.handlers import BaseRouteHandler

    from gateway.agents.base import AgentFactory
    from gateway.cache.base import CacheBackend
    from gateway.control.base import (
        BudgetPublisherFactory,
        ControlStoreFactory,
        FleetScalerFactory,
        MetricPublisherFactory,
        RecordArchiveFactory,
        UsageLedgerFactory,
    )
    from gateway.cost.base import CostPolicy
    from gateway.governance.keystore import KeyStoreFactory
    from gateway.governance.limiter import LimiterFactory
    from gateway.governance.sinks import AlertSinkFactory, UsageSinkFactory
    from gateway.guardrails.base import GuardrailFactory
    from gateway.node.base import (
        EngineRegistrarFactory,
        GpuBackendFactory,
        PlacementStrategyFactory,
    )
    from gateway.providers.base import ProviderFactory
    from gateway.routing.base import RoutingStrategyFactory
    from gateway.scheduling.base import SchedulerFactory
    from gateway.stores.base import ResponseStoreFactory
    from gateway.telemetry.tracing import SpanExporterFactory
    from gateway.tools.base import ToolSourceFactory

T = TypeVar("T")


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid; names the plugin."""


class Registry(Generic[T]):
    """Named objects of one kind, each remembered with the plugin that registered it.

    Args:
        kind: what the objects are, for error messages (``routing strategy``).
        check: whether an object is of this kind; ``add`` rejects the others. Factories are
            only checked to be callable: their signatures are the Protocols' contract.
        expected: what an object should be, for error messages (``a strategy factory``).
    """

    def __init__(self, kind: str, check: Callable[[object], bool], expected: str) -> None:
        self.kind = kind
        self._check = check
        self._expected = expected
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def add(self, plugin: str, name: str, obj: object) -> None:
        """Register ``obj`` under ``name`` on behalf of ``plugin``.

        Raises:
            PluginError: bad name, duplicate name, or an object of the wrong kind.
        """
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin `{plugin}` registered a {self.kind} with an invalid name {name!r}"
            )
        if name in self._items:
            raise PluginError(
                f"plugin `{plugin}` registered {self.kind} `{name}`, which plugin "
                f"`{self._owners[name]}` already registered"
            )
        if not self._check(obj):
            raise PluginError(
                f"plugin `{plugin}` registered {self.kind} `{name}` as "
                f"{type(obj).__name__}; expected {self._expected}"
            )
        self._items[name] = cast(T, obj)  # `check` just vouched for it
        self._owners[name] = plugin

    def get(self, name: str) -> T | None:
        """The object registered under ``name``, or None."""
        return self._items.get(name)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs, sorted by name."""
        return [(name, self._items[name]) for name in self.names()]

    def owner(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self._owners[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _is_route(obj: object) -> bool:
    from litestar import Router
    from litestar.handlers import BaseRouteHandler

    return isinstance(obj, BaseRouteHandler | Router)


def _factories(kind: str, expected: str) -> Callable[[], Registry[Any]]:
    return lambda: Registry(kind, callable, expected)


def _instances(kind: str, protocol: type, expected: str) -> Callable[[], Registry[Any]]:
    return lambda: Registry(kind, lambda obj: isinstance(obj, protocol), expected)


@dataclass
class Registries:
    """Everything the plugins registered, by kind (field ``x`` is filled by hook ``register_x``)."""

    providers: Registry[ProviderFactory] = field(
        default_factory=_factories("provider", "a provider factory")
    )
    routing_strategies: Registry[RoutingStrategyFactory] = field(
        default_factory=_factories("routing strategy", "a strategy factory")
    )
    cache_backends: Registry[Callable[..., CacheBackend]] = field(
        default_factory=_factories("cache backend", "a cache backend factory")
    )
    cost_policies: Registry[Callable[..., CostPolicy]] = field(
        default_factory=_factories("cost policy", "a cost policy factory")
    )
    tools: Registry[Tool] = field(default_factory=_instances("tool", Tool, "a Tool"))
    tool_sources: Registry[ToolSourceFactory] = field(
        default_factory=_factories("tool source", "a tool source factory")
    )
    agents: Registry[AgentFactory] = field(default_factory=_factories("agent", "an agent factory"))
    guardrails: Registry[GuardrailFactory] = field(
        default_factory=_factories("guardrail", "a guardrail factory")
    )
    schedulers: Registry[SchedulerFactory] = field(
        default_factory=_factories("scheduler", "a scheduler factory")
    )
    usage_sinks: Registry[UsageSinkFactory] = field(
        default_factory=_factories("usage sink", "a usage sink factory")
    )
    alert_sinks: Registry[AlertSinkFactory] = field(
        default_factory=_factories("alert sink", "an alert sink factory")
    )
    key_stores: Registry[KeyStoreFactory] = field(
        default_factory=_factories("key store", "a key store factory")
    )
    limiters: Registry[LimiterFactory] = field(
        default_factory=_factories("limiter", "a limiter factory")
    )
    response_stores: Registry[ResponseStoreFactory] = field(
        default_factory=_factories("response store", "a response store factory")
    )
    control_stores: Registry[ControlStoreFactory] = field(
        default_factory=_factories("control store", "a control store factory")
    )
    usage_ledgers: Registry[UsageLedgerFactory] = field(
        default_factory=_factories("usage ledger", "a usage ledger factory")
    )
    record_archives: Registry[RecordArchiveFactory] = field(
        default_factory=_factories("record archive", "a record archive factory")
    )
    budget_publishers: Registry[BudgetPublisherFactory] = field(
        default_factory=_factories("budget publisher", "a budget publisher factory")
    )
    metric_publishers: Registry[MetricPublisherFactory] = field(
        default_factory=_factories("metric publisher", "a metric publisher factory")
    )
    fleet_scalers: Registry[FleetScalerFactory] = field(
        default_factory=_factories("fleet scaler", "a fleet scaler factory")
    )
    gpu_backends: Registry[GpuBackendFactory] = field(
        default_factory=_factories("GPU backend", "a GPU backend factory")
    )
    placement_strategies: Registry[PlacementStrategyFactory] = field(
        default_factory=_factories("placement strategy", "a placement strategy factory")
    )
    engine_registrars: Registry[EngineRegistrarFactory] = field(
        default_factory=_factories("engine registrar", "an engine registrar factory")
    )
    span_exporters: Registry[SpanExporterFactory] = field(
        default_factory=_factories("span exporter", "a span exporter factory")
    )
    routes: Registry[BaseRouteHandler | Router] = field(
        default_factory=lambda: Registry("route", _is_route, "a Litestar route handler or Router")
    )
    commands: Registry[Command] = field(
        default_factory=_instances("command", Command, "a gateway.commands.Command")
    )
    default_sources: Registry[DefaultSource] = field(
        default_factory=_instances("default source", DefaultSource, "a DefaultSource")
    )
    embedded_defaults: Registry[EmbeddedDefault] = field(
        default_factory=_instances("embedded default", EmbeddedDefault, "an EmbeddedDefault")
    )

    def kinds(self) -> dict[str, Registry[Any]]:
        """Each registry by its hook suffix (``providers``, ``routing_strategies``...)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def build_registered(
    registry: Registry[Any],
    name: str,
    options: Mapping[str, Any],
    source: str,
    where: str,
    *,
    named_by: str = "backend",
    **extra: Any,
) -> Any:
    """``registry``'s factory ``name`` called with the config's ``options`` (and ``extra``).

    Args:
        source: the config file, for errors.
        where: the config field of the choice (``store``, ``governance.limiter``): errors name
            ``<where>.<named_by>`` or ``<where>.options``.
        named_by: the field that names the choice (``backend``; ``type`` for guardrails and
            tool sources).

    Raises:
        ConfigError: nothing is registered under ``name``, or the factory rejected the options
            (``TypeError``/``ValueError``).
    """
    from gateway.config_loader import ConfigError

    factory = registry.get(name)
    if factory is None:
        raise ConfigError(
            source,
            f"{where}.{named_by}",
            f"unknown {registry.kind} `{name}`; registered: "
            f"{', '.join(registry.names()) or 'none'}",
        )
    try:
        return factory(**options, **extra)
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, f"{where}.options", str(exc)) from None


def make_plugin_manager(
    disabled: Iterable[str] = (),
    *,
    entry_points: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> pluggy.PluginManager:
    """Build the plugin manager: entry-point plugins (built-ins included), then ``extra``.

    Args:
        disabled: plugin (entry-point) names not to load.
        entry_points: load the ``gateway`` entry-point group; tests may turn this off.
        extra: ``(name, plugin)`` pairs registered directly, for tests and embedding.

    Raises:
        PluginError: a plugin failed to import, or implements a hook that does not exist
            (``check_pending``), naming the plugin.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    if entry_points:
        try:
            pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin `{pm.get_name(exc.plugin)}` is invalid: {exc}") from None
        except Exception as exc:
            raise PluginError(
                f"a plugin in the `gateway` entry-point group failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    for name, plugin in extra:
        if not pm.is_blocked(name):
            pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin `{pm.get_name(exc.plugin)}` implements an unknown hook: {exc}"
        ) from None
    return pm


def collect_registries(pm: pluggy.PluginManager) -> Registries:
    """Call every registration hook, one plugin at a time, so each object is attributed.

    Raises:
        PluginError: a registration was invalid or a hook implementation raised.
    """
    registries = Registries()
    for kind, registry in registries.kinds().items():
        hook = getattr(pm.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():
            plugin = impl.plugin_name

            def register(
                name: str, obj: object, _plugin: str = plugin, _registry: Registry[Any] = registry
            ) -> None:
                _registry.add(_plugin, name, obj)

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin `{plugin}` failed in register_{kind}: {type(exc).__name__}: {exc}"
                ) from exc
    return registries


async def call_lifecycle(
    pm: pluggy.PluginManager, hook_name: str, state: Any, *, swallow: bool
) -> list[tuple[str, BaseException]]:
    """Call ``startup`` or ``shutdown`` on every plugin, awaiting what they return.

    Args:
        swallow: collect exceptions and go on (shutdown) instead of raising (startup).

    Returns:
        ``(plugin, exception)`` for each failure that was swallowed.
    """
    failures: list[tuple[str, BaseException]] = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        try:
            result = impl.function(state=state)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            if not swallow:
                raise PluginError(
                    f"plugin `{impl.plugin_name}` failed in {hook_name}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            failures.append((impl.plugin_name, exc))
    return failures
