"""The ``fake`` GPU backend: GPUs declared in the config whose readings follow the engines.

For machines without GPUs (development, CI, the benchmark's simulated fleet): placement,
metrics and cost see GPUs that fill up and heat up as engines start and get busy. Readings are
deterministic functions of what :meth:`FakeGpuBackend.note_engines` was last told, so tests
can assert exact figures:

- memory used: the engines' memory on the GPU plus :data:`DRIVER_RESERVE_MIB`, at most the
  GPU's memory; free: the rest;
- utilization: ``min(100, sum of busy * 100)`` over the engines on it (``busy`` taken as 0 to 1);
- power: ``idle_power_w + (power_limit_w - idle_power_w) * utilization / 100``;
- temperature: ``30 + 0.5 * utilization`` C (an idle GPU sits at 30 C);
- SM clock: :data:`IDLE_SM_CLOCK_MHZ` when utilization is 0, else ``sm_clock_mhz``;
- processes: ``(pid, memory_mib)`` of each engine on it that has a pid.

An engine's GPU index that names no declared GPU is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.node.base import EngineLoad, GpuProcess, GpuReading

DRIVER_RESERVE_MIB = 0.0
"""Memory a fake GPU reports used with nothing on it. Zero, so an empty GPU offers all of its
memory to placement; real GPUs report a few MiB to a few hundred MiB here."""
IDLE_SM_CLOCK_MHZ = 210.0
"""The SM clock of a GPU with nothing to do (an H100's idle clock)."""
AMBIENT_C = 30.0
DEFAULT_NAME = "NVIDIA H100 80GB HBM3"
DEFAULT_MEMORY_MIB = 81559.0

_FIELDS = {"name", "memory_mib", "power_limit_w", "idle_power_w", "uuid", "sm_clock_mhz"}


@dataclass(frozen=True, slots=True)
class FakeGpu:
    """One declared GPU (see :class:`FakeGpuBackend` for the fields)."""

    index: int
    name: str
    memory_mib: float
    uuid: str
    power_limit_w: float = 700.0
    idle_power_w: float = 70.0
    sm_clock_mhz: float = 1980.0

    @property
    def pci_bus_id(self) -> str:
        return f"00000000:{0x18 + self.index:02X}:00.0"


class FakeGpuBackend:
    """A :class:`gateway.node.base.GpuBackend` over declared GPUs. Give exactly one of:

    Args:
        gpus: the GPUs, each ``{name, memory_mib, power_limit_w (700), idle_power_w (70),
            uuid (GPU-fake-<index>...), sm_clock_mhz (1980, the clock when busy)}``.
        file: a YAML or JSON file holding that list.
        count: that many identical GPUs of ``name`` and ``memory_mib`` (default: H100 80GB).
        name / memory_mib: with ``count``.

    Raises:
        TypeError / ValueError: a bad declaration, naming the field (``gpus[1].memory_mib``).
    """

    def __init__(
        self,
        gpus: Sequence[Mapping[str, object]] | None = None,
        file: str | None = None,
        count: int | None = None,
        name: str | None = None,
        memory_mib: float | None = None,
    ) -> None:
        choices = (("gpus", gpus), ("file", file), ("count", count))
        given = [key for key, value in choices if value is not None]
        if len(given) != 1:
            raise ValueError(
                "the `fake` GPU backend needs exactly one of `gpus` (a list), `file` (a YAML or "
                f"JSON file holding that list) or `count`; got {', '.join(given) or 'none'}"
            )
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int):
                raise TypeError("`count` must be a whole number")
            if count < 1:
                raise ValueError("`count` must be 1 or more")
            spec: list[Mapping[str, object]] = [
                {"name": name or DEFAULT_NAME, "memory_mib": memory_mib or DEFAULT_MEMORY_MIB}
                for _ in range(count)
            ]
            self.gpus = parse_gpus(spec, "gpus")
        elif name is not None or memory_mib is not None:
            raise ValueError("`name` and `memory_mib` go with `count` (in `gpus`: per GPU)")
        elif file is not None:
            self.gpus = _load(Path(file))
        else:
            self.gpus = parse_gpus(gpus, "gpus")
        self._engines: tuple[EngineLoad, ...] = ()

    def note_engines(self, engines: Sequence[EngineLoad]) -> None:
        """What runs now; the next :meth:`read` follows it."""
        self._engines = tuple(engines)

    def read(self) -> list[GpuReading]:
        """Every declared GPU, by index, as the engines last noted make it look."""
        return [self._read_one(gpu) for gpu in self.gpus]

    def _read_one(self, gpu: FakeGpu) -> GpuReading:
        on_it = [e for e in self._engines if gpu.index in e.gpus]
        used = min(gpu.memory_mib, DRIVER_RESERVE_MIB + sum(e.memory_mib for e in on_it))
        util = min(100.0, sum(min(max(e.busy, 0.0), 1.0) * 100.0 for e in on_it))
        return GpuReading(
            index=gpu.index,
            uuid=gpu.uuid,
            name=gpu.name,
            memory_total_mib=gpu.memory_mib,
            memory_used_mib=used,
            memory_free_mib=gpu.memory_mib - used,
            pci_bus_id=gpu.pci_bus_id,
            utilization_pct=util,
            temperature_c=AMBIENT_C + 0.5 * util,
            power_w=gpu.idle_power_w + (gpu.power_limit_w - gpu.idle_power_w) * util / 100.0,
            power_limit_w=gpu.power_limit_w,
            sm_clock_mhz=gpu.sm_clock_mhz if util > 0 else IDLE_SM_CLOCK_MHZ,
            processes=tuple(GpuProcess(e.pid, e.memory_mib) for e in on_it if e.pid is not None),
        )

    def close(self) -> None:
        return None


def parse_gpus(spec: object, where: str) -> tuple[FakeGpu, ...]:
    """``spec`` (a list of GPU mappings) as :class:`FakeGpu` s; ``where`` prefixes errors.

    Raises:
        TypeError / ValueError: naming the field (``gpus[1].memory_mib``).
    """
    if not isinstance(spec, Sequence) or isinstance(spec, str | bytes):
        raise TypeError(f"`{where}` must be a list of GPUs")
    if not spec:
        raise ValueError(f"`{where}` must name at least one GPU")
    return tuple(_parse_gpu(i, item, f"{where}[{i}]") for i, item in enumerate(spec))


def _parse_gpu(index: int, item: object, where: str) -> FakeGpu:
    if not isinstance(item, Mapping):
        raise TypeError(f"`{where}` must be a mapping with `name` and `memory_mib`")
    unknown = sorted(str(k) for k in item if k not in _FIELDS)
    if unknown:
        raise ValueError(f"`{where}` has unknown field(s) {unknown}; known: {sorted(_FIELDS)}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"`{where}.name` must be a GPU model name (`{DEFAULT_NAME}`)")
    uuid = item.get("uuid", f"GPU-fake-{index:04d}-0000-0000-000000000000")
    if not isinstance(uuid, str) or not uuid:
        raise TypeError(f"`{where}.uuid` must be a string")
    limit = _number(item, "power_limit_w", where, 700.0)
    idle = _number(item, "idle_power_w", where, 70.0, allow_zero=True)
    if idle > limit:
        raise ValueError(f"`{where}.idle_power_w` ({idle:g}) exceeds `power_limit_w` ({limit:g})")
    return FakeGpu(
        index=index,
        name=name,
        memory_mib=_number(item, "memory_mib", where, None),
        uuid=uuid,
        power_limit_w=limit,
        idle_power_w=idle,
        sm_clock_mhz=_number(item, "sm_clock_mhz", where, 1980.0),
    )


def _number(
    item: Mapping[str, object],
    key: str,
    where: str,
    default: float | None,
    *,
    allow_zero: bool = False,
) -> float:
    value = item.get(key, default)
    if value is None:
        raise ValueError(f"`{where}.{key}` is required")
    kind = "0 or more" if allow_zero else "a positive number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{where}.{key}` must be {kind}, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"`{where}.{key}` must be {kind}, not {value!r}")
    return number


def _load(path: Path) -> tuple[FakeGpu, ...]:
    """The GPU list in a YAML or JSON file (YAML reads JSON too)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"`file`: cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"`file`: {path} is not YAML or JSON: {exc}") from None
    try:
        return parse_gpus(data, "gpus")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
