"""The control plane's parts built from the settings and the plugins, in one place (as
:mod:`gateway.assembly` builds the data plane's): the shared store, the metric publishers and
the fleet scalers the jobs and their CLIs use. Nothing is started here."""

from __future__ import annotations

from gateway.config_loader import ConfigError
from gateway.control.base import ControlStore, FleetScaler, MetricPublisher
from gateway.plugins import Registries, build_registered, collect_registries, make_plugin_manager
from gateway.settings import Settings


def plugin_registries(settings: Settings) -> Registries:
    """What the plugins register, loaded as the gateway loads them for ``settings``.

    Raises:
        PluginError: a plugin failed to load or register.
    """
    return collect_registries(make_plugin_manager(settings.plugins.disabled))


def build_control_store(
    settings: Settings, registries: Registries, store_dir: str | None = None
) -> ControlStore:
    """The shared store: the ``directory`` store at ``store_dir`` when given (the CLIs'
    ``--store-dir``), else the one ``control.store`` names.

    Raises:
        ConfigError: no store is configured, or an unknown one or options it rejects.
    """
    if store_dir is not None:
        store: ControlStore = build_registered(
            registries.control_stores, "directory", {"path": store_dir}, "--store-dir", "store"
        )
        return store
    choice = settings.control.store
    if choice is None:
        raise ConfigError(
            settings.source, "control.store", "no shared store configured (or give --store-dir)"
        )
    store = build_registered(
        registries.control_stores, choice.backend, choice.options, settings.source, "control.store"
    )
    return store


def build_metric_publishers(settings: Settings, registries: Registries) -> list[MetricPublisher]:
    """The publishers ``control.metric_publishers`` names, in order.

    Raises:
        ConfigError: an unknown publisher or options it rejects (naming the field).
    """
    return [
        build_registered(
            registries.metric_publishers,
            choice.backend,
            choice.options,
            settings.source,
            f"control.metric_publishers[{i}]",
        )
        for i, choice in enumerate(settings.control.metric_publishers)
    ]


def build_fleet_scalers(settings: Settings, registries: Registries) -> dict[str, FleetScaler]:
    """One fleet scaler per model group of ``control.scaling``, by group.

    Raises:
        ConfigError: an unknown scaler or options it rejects (naming the field).
    """
    return {
        group: build_registered(
            registries.fleet_scalers,
            policy.scaler.backend,
            policy.scaler.options,
            settings.source,
            f"control.scaling.{group}.scaler",
        )
        for group, policy in settings.control.scaling.items()
    }
