"""Built-in plugin: the ``nvml`` GPU backend (NVIDIA's NVML through ``nvidia-ml-py``)."""

from gateway import hookimpl
from gateway.hookspecs import RegisterGpuBackend
from gateway_nvml.backend import NvmlBackend


@hookimpl
def register_gpu_backends(register: RegisterGpuBackend) -> None:
    """Register ``nvml`` (the default): every GPU NVML sees (no options)."""
    register("nvml", NvmlBackend)
