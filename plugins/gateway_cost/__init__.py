"""Built-in plugin: the cost policies ``price_table``, ``reject``, ``downgrade`` and
``cheapest_capable``."""

from gateway import hookimpl
from gateway.hookspecs import RegisterCostPolicy
from gateway_cost.price_table import PriceTablePolicy

# name -> factory; each policy lives in its own module, and adding one is one line here.
POLICIES = {
    "price_table": PriceTablePolicy,
}


@hookimpl
def register_cost_policies(register: RegisterCostPolicy) -> None:
    """Register every policy of :data:`POLICIES`."""
    for name, factory in POLICIES.items():
        register(name, factory)
