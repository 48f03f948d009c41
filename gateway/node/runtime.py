"""Build a node agent's parts from its config: the GPU backend, the placement strategy, the
registrar, the shared store, through the plugin registries (errors name the file and field)."""

from __future__ import annotations

from gateway.control.base import ControlStore
from gateway.node.agent import NodeParts
from gateway.node.base import EngineRegistrar, GpuBackend, PlacementStrategy
from gateway.node.meter import EngineMeter
from gateway.plugins import Registries, build_registered
from gateway.providers.base import ProviderContext
from gateway.settings import Settings
from gateway.settings_node import NodeSettings


def node_of(settings: Settings) -> NodeSettings:
    """The config's ``node:`` section.

    Raises:
        ConfigError: the file has none.
    """
    from gateway.config_loader import ConfigError

    if settings.node is None:
        raise ConfigError(settings.source, "node", "missing: this file configures no node agent")
    return settings.node


def gpu_backend(settings: Settings, registries: Registries) -> GpuBackend:
    """The ``node.gpus`` backend.

    Raises:
        ConfigError: unknown, or options it rejects.
        GpuUnavailableError: it has nothing to read (no driver).
    """
    choice = node_of(settings).gpus
    built: GpuBackend = build_registered(
        registries.gpu_backends, choice.backend, choice.options, settings.source, "node.gpus"
    )
    return built


def node_parts(
    settings: Settings, registries: Registries, context: ProviderContext, gpus: GpuBackend
) -> NodeParts:
    """The rest of the agent's parts (``context`` started: its HTTP session is shared).

    Raises:
        ConfigError: an unknown strategy, registrar or store, or options one rejects.
    """
    node = node_of(settings)
    strategy: PlacementStrategy = build_registered(
        registries.placement_strategies,
        node.placement.backend,
        node.placement.options,
        settings.source,
        "node.placement",
    )
    registrar: EngineRegistrar | None = None
    if node.registrar is not None:
        registrar = build_registered(
            registries.engine_registrars,
            node.registrar.backend,
            node.registrar.options,
            settings.source,
            "node.registrar",
        )
    store: ControlStore | None = None
    if settings.control.store is not None:
        store = build_registered(
            registries.control_stores,
            settings.control.store.backend,
            settings.control.store.options,
            settings.source,
            "control.store",
        )
    return NodeParts(
        gpus=gpus,
        strategy=strategy,
        registrar=registrar,
        store=store,
        meter=EngineMeter(registries, context, "vllm"),
        http=context.http,
    )
