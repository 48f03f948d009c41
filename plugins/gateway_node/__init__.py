"""Built-in plugin: the node agent's local parts: the ``fake`` GPU backend, the placement
strategies (``best_fit``, ``least_utilized``, ``priority``, ``round_robin``), the
``gateway_admin`` engine registrar, the ``node_agents`` fleet scaler, and ``gateway node``."""

from gateway import hookimpl
from gateway.hookspecs import RegisterGpuBackend
from gateway_node.fake_gpus import FakeGpuBackend


@hookimpl
def register_gpu_backends(register: RegisterGpuBackend) -> None:
    """Register ``fake``: declared GPUs whose readings follow the engines (``{gpus: [...]}``,
    ``{file}`` or ``{count, name, memory_mib}``)."""
    register("fake", FakeGpuBackend)
