"""The ``nvml`` GPU backend: NVIDIA's NVML through ``nvidia-ml-py`` (``import pynvml``).

``pynvml`` is pure ctypes, so importing it always works; ``nvmlInit()`` is where a machine
without the driver library, or with the driver not loaded, says so. Those become one
:class:`GpuUnavailableError` at construction with a message an operator can act on.

A figure a GPU does not report (``NVMLError_NotSupported`` and other per-call errors: consumer
cards have no power reading, MIG hides processes' memory) is left out (None), never 0, and
never fails the reading. Errors that mean the driver is gone (GPU lost, driver unloaded, a
driver/library mismatch after an upgrade) fail the reading with :class:`GpuUnavailableError`.

The module is taken as a :class:`~types.ModuleType` so tests can hand in a fake one; ``pynvml``
ships no type information, and a module's attributes type as ``Any``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from gateway.node.base import EngineLoad, GpuProcess, GpuReading, GpuUnavailableError

log = logging.getLogger("gateway.node.nvml")

_MIB = 1024 * 1024
_MILLIWATTS_PER_WATT = 1000.0


def _text(value: str | bytes) -> str:
    """A string from NVML (older ``pynvml`` versions return bytes)."""
    return value.decode() if isinstance(value, bytes) else value


class NvmlBackend:
    """A :class:`gateway.node.base.GpuBackend` reading every GPU NVML sees.

    Args:
        nvml: the ``pynvml`` module (None: import it); tests pass a fake.

    Raises:
        GpuUnavailableError: no NVML library, no driver loaded, no permission, or no GPU.
    """

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._nvml = nvml if nvml is not None else _import_pynvml()
        nvml = self._nvml
        # The errors that mean nothing more can be read until the driver is back.
        self._fatal: tuple[type[Exception], ...] = (
            nvml.NVMLError_GpuIsLost,
            nvml.NVMLError_DriverNotLoaded,
            nvml.NVMLError_Uninitialized,
            nvml.NVMLError_LibRmVersionMismatch,
        )
        self._init()
        self._open = True
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
            if count == 0:
                raise GpuUnavailableError("NVML found no NVIDIA GPU on this machine")
            self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            # Identity does not change while the driver is loaded: read it once.
            self._uuids = [_text(self._nvml.nvmlDeviceGetUUID(h)) for h in self._handles]
            self._names = [_text(self._nvml.nvmlDeviceGetName(h)) for h in self._handles]
            self._pci = [self._optional(self._pci_bus_id, h) for h in self._handles]
        except self._nvml.NVMLError as exc:
            self.close()
            raise GpuUnavailableError(f"NVML could not list the GPUs: {exc}") from None
        except GpuUnavailableError:
            self.close()
            raise
        self._last_memory: dict[int, tuple[float, float, float]] = {}
        log.info("NVML reads %d GPU(s): %s", count, ", ".join(self._names))

    def _init(self) -> None:
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError_LibraryNotFound:
            raise GpuUnavailableError(
                "no NVIDIA driver library (libnvidia-ml.so.1) on this machine: install the "
                "NVIDIA driver, or use the `fake` GPU backend"
            ) from None
        except nvml.NVMLError_DriverNotLoaded:
            raise GpuUnavailableError(
                "the NVIDIA driver is not loaded (libnvidia-ml.so.1 is there, the kernel module "
                "is not): load it (`modprobe nvidia`) or reboot; `nvidia-smi` shows the same"
            ) from None
        except nvml.NVMLError_NoPermission:
            raise GpuUnavailableError(
                "no permission to use the NVIDIA driver: run the agent as a user that may open "
                "/dev/nvidia*"
            ) from None
        except nvml.NVMLError as exc:
            raise GpuUnavailableError(f"NVML could not start: {exc}") from None

    def read(self) -> list[GpuReading]:
        """Every GPU, by index.

        Raises:
            GpuUnavailableError: the driver went away (GPU lost, driver unloaded or upgraded).
        """
        if not self._open:
            raise GpuUnavailableError("the NVML backend is closed")
        return [self._read_one(index, handle) for index, handle in enumerate(self._handles)]

    def _read_one(self, index: int, handle: Any) -> GpuReading:
        nvml = self._nvml
        total, used, free = self._memory(index, handle)
        utilization = self._optional(nvml.nvmlDeviceGetUtilizationRates, handle)
        temperature = self._optional(
            nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
        )
        power_mw = self._optional(nvml.nvmlDeviceGetPowerUsage, handle)
        limit_mw = self._optional(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        clock = self._optional(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
        processes = self._optional(nvml.nvmlDeviceGetComputeRunningProcesses, handle)
        return GpuReading(
            index=index,
            uuid=self._uuids[index],
            name=self._names[index],
            memory_total_mib=total,
            memory_used_mib=used,
            memory_free_mib=free,
            pci_bus_id=self._pci[index],
            utilization_pct=None if utilization is None else float(utilization.gpu),
            temperature_c=None if temperature is None else float(temperature),
            power_w=None if power_mw is None else power_mw / _MILLIWATTS_PER_WATT,
            power_limit_w=None if limit_mw is None else limit_mw / _MILLIWATTS_PER_WATT,
            sm_clock_mhz=None if clock is None else float(clock),
            processes=_processes(processes or ()),
        )

    def _memory(self, index: int, handle: Any) -> tuple[float, float, float]:
        """(total, used, free) MiB; the last good figures when NVML fails to say this once
        (the fields are required, and a made-up 0 would mislead placement)."""
        info = self._optional(self._nvml.nvmlDeviceGetMemoryInfo, handle)
        if info is not None:
            memory = (info.total / _MIB, info.used / _MIB, info.free / _MIB)
            self._last_memory[index] = memory
            return memory
        if index in self._last_memory:
            return self._last_memory[index]
        raise GpuUnavailableError(f"GPU {index} ({self._names[index]}) does not report its memory")

    def _pci_bus_id(self, handle: Any) -> str:
        return _text(self._nvml.nvmlDeviceGetPciInfo(handle).busId)

    def _optional(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``, or None when NVML does not give this figure.

        Raises:
            GpuUnavailableError: the error means the driver is gone.
        """
        try:
            return call(*args)
        except self._fatal as exc:
            raise GpuUnavailableError(f"the NVIDIA driver stopped answering: {exc}") from None
        except self._nvml.NVMLError as exc:
            log.debug("NVML gives no figure (left out): %s", exc)
            return None

    def note_engines(self, engines: Sequence[EngineLoad]) -> None:
        """Ignored: NVML reads what the engines really do."""

    def close(self) -> None:
        """Shut NVML down (once; later calls do nothing)."""
        if not self._open:
            return
        self._open = False
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.debug("nvmlShutdown: %s", exc)


def _processes(procs: Sequence[Any]) -> tuple[GpuProcess, ...]:
    return tuple(
        GpuProcess(
            pid=int(p.pid),
            used_mib=None if p.usedGpuMemory is None else p.usedGpuMemory / _MIB,
        )
        for p in procs
    )


def _import_pynvml() -> ModuleType:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        raise GpuUnavailableError(
            "the `nvml` GPU backend needs nvidia-ml-py (`pip install nvidia-ml-py`)"
        ) from None
