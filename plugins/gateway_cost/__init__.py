"""Built-in plugin: the cost policies ``price_table``, ``reject``, ``downgrade`` and
``cheapest_capable``."""

from collections.abc import Callable

from gateway import hookimpl
from gateway.cost.base import CostPolicy
from gateway.hookspecs import RegisterCostPolicy
from gateway_cost.policies import CheapestCapablePolicy, DowngradePolicy, RejectPolicy
from gateway_cost.price_table import PriceTablePolicy

# name -> factory; adding a policy is one line here.
POLICIES: dict[str, Callable[..., CostPolicy]] = {
    "price_table": PriceTablePolicy,
    "reject": RejectPolicy,
    "downgrade": DowngradePolicy,
    "cheapest_capable": CheapestCapablePolicy,
}


@hookimpl
def register_cost_policies(register: RegisterCostPolicy) -> None:
    """Register every policy of :data:`POLICIES`."""
    for name, factory in POLICIES.items():
        register(name, factory)
