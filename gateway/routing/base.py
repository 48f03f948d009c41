"""The routing-strategy contract.

A strategy is registered through ``register_routing_strategies`` as a factory called with the model
group's ``routing.params`` as keyword arguments; it returns one :class:`RoutingStrategy` per model
group. ``choose`` is called on every request, synchronously, with a read-only view of the group's
backends: keep it pure (no I/O), so it is cheap and unit-testable without an event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class BackendView(Protocol):
    """What a strategy may read about a backend.

    Attributes:
        name: unique backend name.
        weight: configured relative share.
        in_flight: requests this gateway process has outstanding on it now.
        available: False while the backend is known to be down.
    """

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def available(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a strategy may read about the request being routed.

    Attributes:
        model: the public model name the client asked for.
        endpoint: the OpenAI endpoint path (``chat/completions``...).
        payload: the validated request Struct.
        headers: the client's request headers (lower-case names).
    """

    model: str
    endpoint: str
    payload: Any
    headers: Mapping[str, str]


@runtime_checkable
class RoutingStrategy(Protocol):
    """Picks the backend for one request."""

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> int:
        """Return the index in ``backends`` of the backend to use.

        ``backends`` is never empty and holds only backends not known to be down (all of them
        when every one is). The gateway may call ``choose`` again with the failed backend removed
        when a connection could not be made.
        """
        ...


class RoutingStrategyFactory(Protocol):
    """What ``register_routing_strategies`` registers.

    Called with the group's ``routing.params`` as keyword arguments.

    Raises:
        TypeError or ValueError: bad parameters; the gateway names the config field.
    """

    def __call__(self, **params: Any) -> RoutingStrategy: ...
