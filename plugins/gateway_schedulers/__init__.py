"""Built-in plugin: the schedulers ``fifo``, ``priority`` and ``fair_share``."""

from gateway import hookimpl
from gateway.hookspecs import RegisterScheduler
from gateway_schedulers.fair_share import FairShareScheduler
from gateway_schedulers.fifo import FifoScheduler
from gateway_schedulers.priority import PriorityScheduler


@hookimpl
def register_schedulers(register: RegisterScheduler) -> None:
    """Register ``fifo`` (the default, no options), ``priority`` (option ``urgent_priority``:
    the lowest band that may take a group's headroom) and ``fair_share`` (the same, and
    ``under_share_first``)."""
    register("fifo", FifoScheduler)
    register("priority", PriorityScheduler)
    register("fair_share", FairShareScheduler)
