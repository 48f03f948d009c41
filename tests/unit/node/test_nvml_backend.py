"""The ``nvml`` backend over a fake ``pynvml`` module (a real module object with pynvml's
names and error hierarchy), and the real ``pynvml`` on this driverless machine."""

from __future__ import annotations

import ctypes
import string
import types
from dataclasses import dataclass
from typing import Any

import pytest
from gateway_nvml.backend import NvmlBackend

from gateway.node.base import GpuBackend, GpuProcess, GpuUnavailableError

MIB = 1024 * 1024
# pynvml's codes for the errors the backend names.
ERROR_CODES = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": 18,
}


@dataclass
class Memory:
    total: int
    free: int
    used: int


@dataclass
class Utilization:
    gpu: int
    memory: int


@dataclass
class PciInfo:
    busId: bytes  # noqa: N815 - pynvml's field name


@dataclass
class Process:
    pid: int
    usedGpuMemory: int | None  # noqa: N815 - pynvml's field name


@dataclass
class Device:
    uuid: str
    name: bytes
    bus_id: bytes
    memory: Memory
    utilization: int
    temperature: int
    power_mw: int | None
    limit_mw: int | None
    sm_clock: int | None
    processes: list[Process]


class FakeNvml:
    """The state behind a fake ``pynvml`` module, and the module itself (``.module``)."""

    def __init__(self, devices: list[Device], init_error: str | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.lost = False
        self.calls: list[str] = []
        self.module = self._build()

    def _build(self) -> types.ModuleType:
        mod = types.ModuleType("pynvml")

        # As pynvml builds them (_extractNVMLErrorsAsClasses): one subclass per code, and
        # NVMLError(code) maps to it.
        class NVMLError(Exception):
            mapping: dict[int, type[NVMLError]] = {}
            value: int

            def __new__(cls, value: int) -> NVMLError:
                if cls is NVMLError:
                    cls = NVMLError.mapping.get(value, cls)
                obj = Exception.__new__(cls)
                obj.value = value
                return obj

            def __str__(self) -> str:
                return f"NVML error {self.value}"

        mod.NVMLError = NVMLError  # type: ignore[attr-defined]
        for err_name, code in ERROR_CODES.items():
            setattr(mod, err_name, code)
            words = string.capwords(err_name.replace("NVML_ERROR_", ""), "_").replace("_", "")

            def new(cls: type[NVMLError], *args: object, _code: int = code) -> NVMLError:
                return NVMLError.__new__(cls, _code)

            cls = type(f"NVMLError_{words}", (NVMLError,), {"__new__": new})
            setattr(mod, cls.__name__, cls)
            NVMLError.mapping[code] = cls
        mod.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
        mod.NVML_CLOCK_SM = 1  # type: ignore[attr-defined]

        def check(value: Any) -> Any:
            if self.lost:
                raise NVMLError(ERROR_CODES["NVML_ERROR_GPU_IS_LOST"])
            if value is None:
                raise NVMLError(ERROR_CODES["NVML_ERROR_NOT_SUPPORTED"])
            return value

        def init() -> None:
            self.calls.append("init")
            if self.init_error is not None:
                raise NVMLError(ERROR_CODES[self.init_error])

        def shutdown() -> None:
            self.calls.append("shutdown")

        def temperature(h: Device, sensor: int) -> int:
            assert sensor == 0
            return int(check(h.temperature))

        def clock(h: Device, kind: int) -> int:
            assert kind == 1
            return int(check(h.sm_clock))

        functions = {
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlDeviceGetCount": lambda: len(self.devices),
            "nvmlDeviceGetHandleByIndex": lambda i: self.devices[i],
            "nvmlDeviceGetUUID": lambda h: h.uuid,
            "nvmlDeviceGetName": lambda h: h.name,
            "nvmlDeviceGetPciInfo": lambda h: PciInfo(busId=h.bus_id),
            "nvmlDeviceGetMemoryInfo": lambda h: check(h.memory),
            "nvmlDeviceGetUtilizationRates": lambda h: Utilization(check(h.utilization), 0),
            "nvmlDeviceGetTemperature": temperature,
            "nvmlDeviceGetPowerUsage": lambda h: check(h.power_mw),
            "nvmlDeviceGetEnforcedPowerLimit": lambda h: check(h.limit_mw),
            "nvmlDeviceGetClockInfo": clock,
            "nvmlDeviceGetComputeRunningProcesses": lambda h: check(h.processes),
        }
        for name, fn in functions.items():
            setattr(mod, name, fn)
        return mod


def two_gpus() -> list[Device]:
    h100 = Device(
        uuid="GPU-aaaa",
        name=b"NVIDIA H100 80GB HBM3",
        bus_id=b"00000000:18:00.0",
        memory=Memory(total=81559 * MIB, free=61079 * MIB, used=20480 * MIB),
        utilization=87,
        temperature=64,
        power_mw=512_345,
        limit_mw=700_000,
        sm_clock=1980,
        processes=[Process(4242, 20000 * MIB), Process(4343, None)],
    )
    # A card with no power reading and no clock (NVML says NotSupported).
    l4 = Device(
        uuid="GPU-bbbb",
        name=b"NVIDIA L4",
        bus_id=b"00000000:3B:00.0",
        memory=Memory(total=23034 * MIB, free=23034 * MIB, used=0),
        utilization=0,
        temperature=31,
        power_mw=None,
        limit_mw=None,
        sm_clock=None,
        processes=[],
    )
    return [h100, l4]


def test_readings_convert_units_and_leave_out_what_a_gpu_does_not_report() -> None:
    fake = FakeNvml(two_gpus())
    backend = NvmlBackend(fake.module)
    assert isinstance(backend, GpuBackend)
    first, second = backend.read()

    assert (first.index, first.uuid, first.name) == (0, "GPU-aaaa", "NVIDIA H100 80GB HBM3")
    assert first.pci_bus_id == "00000000:18:00.0"
    assert (first.memory_total_mib, first.memory_used_mib, first.memory_free_mib) == (
        81559.0,
        20480.0,
        61079.0,
    )
    assert first.utilization_pct == 87.0
    assert first.temperature_c == 64.0
    assert first.power_w == 512.345
    assert first.power_limit_w == 700.0
    assert first.sm_clock_mhz == 1980.0
    assert first.processes == (GpuProcess(4242, 20000.0), GpuProcess(4343, None))

    assert (second.index, second.name, second.memory_free_mib) == (1, "NVIDIA L4", 23034.0)
    assert second.utilization_pct == 0.0  # a real 0 stays 0
    assert second.temperature_c == 31.0
    assert second.power_w is None
    assert second.power_limit_w is None
    assert second.sm_clock_mhz is None
    assert second.processes == ()

    backend.close()
    backend.close()
    assert fake.calls == ["init", "shutdown"]


def test_memory_keeps_its_last_figures_when_nvml_stops_giving_them_once() -> None:
    fake = FakeNvml(two_gpus())
    backend = NvmlBackend(fake.module)
    backend.read()
    kept = fake.devices[0].memory
    fake.devices[0].memory = None  # type: ignore[assignment]
    assert backend.read()[0].memory_used_mib == kept.used / MIB
    backend.close()


def test_a_lost_gpu_fails_the_reading() -> None:
    fake = FakeNvml(two_gpus())
    backend = NvmlBackend(fake.module)
    fake.lost = True
    with pytest.raises(GpuUnavailableError, match="stopped answering"):
        backend.read()
    backend.close()


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("NVML_ERROR_LIBRARY_NOT_FOUND", r"no NVIDIA driver library \(libnvidia-ml\.so\.1\)"),
        ("NVML_ERROR_DRIVER_NOT_LOADED", "the NVIDIA driver is not loaded"),
        ("NVML_ERROR_NO_PERMISSION", "no permission to use the NVIDIA driver"),
    ],
)
def test_a_machine_without_a_usable_driver_says_which(error: str, message: str) -> None:
    fake = FakeNvml(two_gpus(), init_error=error)
    with pytest.raises(GpuUnavailableError, match=message):
        NvmlBackend(fake.module)
    assert fake.calls == ["init"]  # nothing to shut down


def test_no_devices_is_unavailable_and_shuts_nvml_down() -> None:
    fake = FakeNvml([])
    with pytest.raises(GpuUnavailableError, match="no NVIDIA GPU"):
        NvmlBackend(fake.module)
    assert fake.calls == ["init", "shutdown"]


def _has_driver_library() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_the_real_pynvml_reads_the_gpus_or_reports_the_missing_driver() -> None:
    if not _has_driver_library():
        # The development machine: the real nvmlInit() cannot load libnvidia-ml.so.1.
        with pytest.raises(GpuUnavailableError, match="no NVIDIA driver library"):
            NvmlBackend()
        return
    backend = NvmlBackend()
    try:
        readings = backend.read()
    finally:
        backend.close()
    assert [r.index for r in readings] == list(range(len(readings)))
    assert all(r.uuid.startswith(("GPU-", "MIG-")) and r.memory_total_mib > 0 for r in readings)
