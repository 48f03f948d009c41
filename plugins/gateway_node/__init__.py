"""Built-in plugin: the node agent's local parts: the ``fake`` GPU backend, the placement
strategies (``best_fit``, ``least_utilized``, ``priority``, ``round_robin``), the
``gateway_admin`` engine registrar, the ``node_agents`` fleet scaler, and ``gateway node``."""

from gateway import hookimpl
from gateway.hookspecs import (
    RegisterCommand,
    RegisterEngineRegistrar,
    RegisterFleetScaler,
    RegisterGpuBackend,
    RegisterPlacementStrategy,
)
from gateway_node.fake_gpus import FakeGpuBackend
from gateway_node.placement import (
    BestFitStrategy,
    LeastUtilizedStrategy,
    PriorityStrategy,
    RoundRobinStrategy,
)
from gateway_node.registrar import GatewayAdminRegistrar
from gateway_node.scaler import node_agents_scaler


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """Register ``gateway node``."""
    from gateway.node.cli import COMMAND

    register("node", COMMAND)


@hookimpl
def register_engine_registrars(register: RegisterEngineRegistrar) -> None:
    """Register ``gateway_admin``: the admin API of every gateway replica (``{gateway_urls,
    master_key, timeout_s}``)."""
    register("gateway_admin", GatewayAdminRegistrar)


@hookimpl
def register_fleet_scalers(register: RegisterFleetScaler) -> None:
    """Register ``node_agents``: scale orders the node agents follow through the shared store
    (``{group, store: {backend, options}, stale_s}``)."""
    register("node_agents", node_agents_scaler)


@hookimpl
def register_gpu_backends(register: RegisterGpuBackend) -> None:
    """Register ``fake``: declared GPUs whose readings follow the engines (``{gpus: [...]}``,
    ``{file}`` or ``{count, name, memory_mib}``)."""
    register("fake", FakeGpuBackend)


@hookimpl
def register_placement_strategies(register: RegisterPlacementStrategy) -> None:
    """Register ``best_fit`` (the default), ``least_utilized``, ``priority`` and
    ``round_robin``."""
    register("best_fit", BestFitStrategy)
    register("least_utilized", LeastUtilizedStrategy)
    register("priority", PriorityStrategy)
    register("round_robin", RoundRobinStrategy)
