"""Built-in plugin: the ``round_robin`` routing strategy."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from gateway import hookimpl
from gateway.hookspecs import RegisterRoutingStrategy
from gateway.routing.base import BackendView, RouteRequest


class RoundRobinStrategy:
    """Takes the group's available backends in turn."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> int:
        """The next index in rotation."""
        return next(self._counter) % len(backends)


@hookimpl
def register_routing_strategies(register: RegisterRoutingStrategy) -> None:
    """Register ``round_robin``."""
    register("round_robin", RoundRobinStrategy)
