"""The ``node_agents`` fleet scaler: a model group's replicas are engines on GPU nodes, and
``scale-fleet``'s decision becomes a scale order in the shared store that every node agent
reads and takes its share of (:mod:`gateway.node.orders`).

The store is named in the scaler's options as ``control.store`` names it (``{backend,
options}``), one of the built-in ``redis`` and ``directory`` stores: the node agents read the
same store from their own ``control.store``. A fleet scaler's factory is given only its
options, not the control plane's store or the plugin registries, so the two built-in stores
are built here directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from gateway_control.directory_store import DirectoryControlStore
from gateway_control.redis_store import RedisControlStore

from gateway.control.base import ControlStore
from gateway.node.orders import node_statuses, read_orders, serving, write_order
from gateway.settings_base import PluginChoice

STORES: Mapping[str, Callable[..., ControlStore]] = {
    "directory": DirectoryControlStore,
    "redis": RedisControlStore,
}


class NodeAgentsScaler:
    """A :class:`gateway.control.base.FleetScaler` whose replicas are node agents' engines.

    Args:
        store: the shared store the node agents read (closed by :meth:`aclose`).
        group: the model group.
        stale_s: a node whose last status is older than this is taken for gone (a few of its
            ``order_interval_s``).
    """

    def __init__(self, store: ControlStore, group: str, stale_s: float = 30.0) -> None:
        self.store = store
        self.group = group
        self.stale_s = stale_s

    async def current(self) -> int:
        """The replicas last ordered for the group; before any order, the engines ready on the
        live nodes that serve it (what the fleet runs from the nodes' own config).

        Raises:
            ServiceUnavailableError: the store cannot be reached.
        """
        ordered = (await read_orders(self.store)).get(self.group)
        if ordered is not None:
            return ordered
        statuses = await node_statuses(self.store)
        live = serving(statuses, self.group, time.time(), self.stale_s)
        return sum(statuses[node].groups[self.group].ready for node in live)

    async def set_desired(self, replicas: int) -> None:
        """Order ``replicas`` engines for the group across the node agents.

        Raises:
            ValueError: a negative count.
            ServiceUnavailableError: the store cannot be reached.
        """
        await write_order(self.store, self.group, replicas, time.time())

    async def aclose(self) -> None:
        await self.store.aclose()


def node_agents_scaler(group: str, store: Any, stale_s: float = 30.0) -> NodeAgentsScaler:
    """The ``node_agents`` factory (``control.scaling.<group>.scaler.options``).

    Args:
        group: the model group the node agents' deployments serve.
        store: the shared store, as ``control.store`` names it: ``{backend: redis|directory,
            options: {...}}``.
        stale_s: see :class:`NodeAgentsScaler`.

    Raises:
        TypeError, ValueError: bad options (also those the store rejects).
    """
    if not isinstance(group, str) or not group:
        raise ValueError("`group` is required: the model group the node agents serve")
    if isinstance(stale_s, bool) or not isinstance(stale_s, int | float) or stale_s <= 0:
        raise ValueError(f"`stale_s` must be a number of seconds above 0, got {stale_s!r}")
    try:
        choice = msgspec.convert(store, PluginChoice)
    except msgspec.ValidationError as exc:
        raise ValueError(f"`store` must be {{backend, options}}: {exc}") from None
    factory = STORES.get(choice.backend)
    if factory is None:
        raise ValueError(f"`store.backend` must be one of {sorted(STORES)}, got `{choice.backend}`")
    return NodeAgentsScaler(factory(**choice.options), group, float(stale_s))
