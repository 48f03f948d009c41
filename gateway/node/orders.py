"""Scale orders between the control plane and the node agents, through the shared store's job
state (:class:`gateway.control.base.ControlStore` ``get_state``/``put_state`` only).

- ``node-orders``: ``{"groups": {group: {"replicas": n, "at": unix_ts}}}``, the replicas the
  ``node_agents`` fleet scaler asks of the whole fleet per model group. Writing one group is a
  read-modify-write of that one state: safe because ``scale-fleet`` is its only writer and
  runs one decision at a time.
- ``node.<node>``: ``{"at": ts, "groups": {group: {"running": r, "ready": k, "capacity":
  c}}}``, what one node agent runs, published by that agent (its only writer).
- ``node-agents``: ``{"nodes": {node: last_seen_ts}}``, the agents that published, since a
  store cannot list its states. Every agent writes it (read-modify-write): two publishing at
  once may lose one's entry, which its next publication puts back; liveness is read from each
  node's own status, never from this registry.

Each node takes :func:`share` of a group's order, capped at its own capacity.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.control.base import ControlStore

log = logging.getLogger("gateway.node")

ORDERS = "node-orders"
AGENTS = "node-agents"
FORGET_S = 24 * 3600.0
"""A node not heard of for this long is dropped from the ``node-agents`` registry."""
_NODE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """What one node runs for one model group.

    Attributes:
        running: engines started (loading or serving).
        ready: engines that passed their health check and are registered.
        capacity: the most engines it could run (its deployments' ``max_replicas``).
    """

    running: int
    ready: int
    capacity: int


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A node's last published status: when (``at``, Unix time) and per group."""

    node: str
    at: float
    groups: Mapping[str, GroupStatus]


def status_state(node: str) -> str:
    """The state a node publishes its status to (``node.<node>``).

    Raises:
        ValueError: a name a store cannot hold as a state name (letters, digits, ``_.-``).
    """
    if not _NODE_NAME.match(node):
        raise ValueError(f"a node name must be letters, digits and `_.-`, got `{node}`")
    return f"node.{node}"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


async def read_orders(store: ControlStore) -> dict[str, int]:
    """The replicas ordered per model group (``{}`` before the first order); a malformed
    entry is skipped with a warning.

    Raises:
        ServiceUnavailableError: the store cannot be reached.
    """
    groups = (await store.get_state(ORDERS)).get("groups", {})
    orders: dict[str, int] = {}
    for group, entry in groups.items() if isinstance(groups, Mapping) else ():
        replicas = _count(entry.get("replicas")) if isinstance(entry, Mapping) else None
        if replicas is None:
            log.warning("node orders: group %s: unreadable order %r, skipped", group, entry)
            continue
        orders[group] = replicas
    return orders


async def write_order(store: ControlStore, group: str, replicas: int, now: float) -> None:
    """Order ``replicas`` engines for ``group`` across the fleet, at Unix time ``now``.

    Raises:
        ValueError: a negative count.
        ServiceUnavailableError: the store cannot be reached.
    """
    if replicas < 0:
        raise ValueError(f"replicas must be 0 or more, got {replicas}")
    state = dict(await store.get_state(ORDERS))
    groups = dict(state.get("groups") or {})
    groups[group] = {"replicas": replicas, "at": now}
    await store.put_state(ORDERS, {**state, "groups": groups})


async def publish_node_status(
    store: ControlStore, node: str, groups: Mapping[str, GroupStatus], now: float
) -> None:
    """Publish what ``node`` runs per group, at Unix time ``now``, and note the node in the
    ``node-agents`` registry (forgetting nodes not heard of for :data:`FORGET_S`).

    Raises:
        ValueError: a node name a store cannot hold (:func:`status_state`).
        ServiceUnavailableError: the store cannot be reached.
    """
    body = {
        "at": now,
        "groups": {
            group: {"running": s.running, "ready": s.ready, "capacity": s.capacity}
            for group, s in groups.items()
        },
    }
    await store.put_state(status_state(node), body)
    seen = (await store.get_state(AGENTS)).get("nodes", {})
    nodes = {
        name: at
        for name, at in (seen.items() if isinstance(seen, Mapping) else ())
        if isinstance(at, int | float) and at >= now - FORGET_S
    }
    nodes[node] = now
    await store.put_state(AGENTS, {"nodes": nodes})


def _node_status(node: str, state: Mapping[str, Any]) -> NodeStatus | None:
    at, groups = state.get("at"), state.get("groups")
    if not isinstance(at, int | float) or not isinstance(groups, Mapping):
        return None
    parsed: dict[str, GroupStatus] = {}
    for group, entry in groups.items():
        if not isinstance(entry, Mapping):
            return None
        counts = [_count(entry.get(k)) for k in ("running", "ready", "capacity")]
        if None in counts:
            return None
        running, ready, capacity = (c or 0 for c in counts)
        parsed[group] = GroupStatus(running, ready, capacity)
    return NodeStatus(node, float(at), parsed)


async def node_statuses(
    store: ControlStore, nodes: Sequence[str] | None = None
) -> dict[str, NodeStatus]:
    """The last published status of each of ``nodes`` (default: every node in the
    ``node-agents`` registry), by name; nodes that never published (or whose status is
    unreadable, with a warning) are left out. Whether a status is fresh is the caller's
    judgement (:func:`serving`).

    Raises:
        ServiceUnavailableError: the store cannot be reached.
    """
    if nodes is None:
        seen = (await store.get_state(AGENTS)).get("nodes", {})
        nodes = sorted(seen) if isinstance(seen, Mapping) else []
    names = [n for n in nodes if _NODE_NAME.match(n)]
    states = await asyncio.gather(*(store.get_state(status_state(n)) for n in names))
    statuses: dict[str, NodeStatus] = {}
    for name, state in zip(names, states, strict=True):
        if not state:
            continue
        status = _node_status(name, state)
        if status is None:
            log.warning("node orders: node %s: unreadable status %r, skipped", name, state)
            continue
        statuses[name] = status
    return statuses


def serving(
    statuses: Mapping[str, NodeStatus], group: str, now: float, stale_s: float
) -> list[str]:
    """The nodes, sorted, whose status is at most ``stale_s`` old at ``now`` and lists
    ``group``: the live nodes that serve it (what :func:`share` splits over)."""
    return sorted(
        name
        for name, status in statuses.items()
        if status.at >= now - stale_s and group in status.groups
    )


def share(replicas: int, nodes: Sequence[str], me: str) -> int:
    """``me``'s part of a group's ``replicas``, split evenly across ``nodes`` (the live nodes
    that serve the group; ``me`` counts among them whether listed or not).

    The nodes are taken sorted by name; each gets ``replicas // len(nodes)`` and the first
    ``replicas % len(nodes)`` one more, so every node computes the same split without talking
    to the others. The caller caps its part at its own capacity; what a capped node cannot
    run is not moved to the others.

    Raises:
        ValueError: a negative count.
    """
    if replicas < 0:
        raise ValueError(f"replicas must be 0 or more, got {replicas}")
    members = sorted({*nodes, me})
    base, extra = divmod(replicas, len(members))
    return base + (1 if members.index(me) < extra else 0)
