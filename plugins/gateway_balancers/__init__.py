"""Built-in plugin: load-balancing strategies that need nothing but the gateway's own view.

``weighted``, ``least_inflight``, ``p2c_ewma``, ``session``, ``cost`` and ``priority``.
"""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import RegisterRoutingStrategy
from gateway_balancers.strategies import (
    CostStrategy,
    LeastInflightStrategy,
    PowerOfTwoEwmaStrategy,
    PriorityStrategy,
    SessionStrategy,
    WeightedStrategy,
)


@hookimpl
def register_routing_strategies(register: RegisterRoutingStrategy) -> None:
    """Register the balancers."""
    register("weighted", WeightedStrategy)
    register("least_inflight", LeastInflightStrategy)
    register("p2c_ewma", PowerOfTwoEwmaStrategy)
    register("session", SessionStrategy)
    register("cost", CostStrategy)
    register("priority", PriorityStrategy)
