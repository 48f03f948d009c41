"""The GPU node agent's contracts: reading GPUs, placing engines on them, and telling the gateway
where the engines are. Implementations are plugins (``register_gpu_backends``,
``register_placement_strategies``, ``register_engine_registrars``); ``docs/node.md`` explains the
agent, ``docs/plugins.md`` the hooks.

Units are the ones operators read: memory in MiB, power in W, clocks in MHz, temperature in C,
utilization in percent. A figure a GPU does not report (NVML's ``NotSupported``) is None, never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable


class GpuUnavailableError(Exception):
    """No GPU can be read here: no NVML library, no driver loaded, no device. The message says
    which, in words an operator can act on."""


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding memory on a GPU.

    Attributes:
        pid: its process id (in the host's namespace, as the driver sees it).
        used_mib: its GPU memory; None when the driver does not say (containers, MIG).
    """

    pid: int
    used_mib: float | None


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU, read once.

    Attributes:
        index: the device index (what ``CUDA_VISIBLE_DEVICES`` names).
        uuid: the device UUID (``GPU-...``).
        name: the model name (``NVIDIA H200``): what ``node.gpu_hour_usd`` prices.
        pci_bus_id: the PCI bus id, if known.
        memory_total_mib / memory_used_mib / memory_free_mib: framebuffer memory.
        utilization_pct: GPU utilization over the driver's last sample period.
        temperature_c: the GPU's temperature.
        power_w / power_limit_w: power draw and its enforced limit.
        sm_clock_mhz: the SM clock.
        processes: the compute processes on it.
    """

    index: int
    uuid: str
    name: str
    memory_total_mib: float
    memory_used_mib: float
    memory_free_mib: float
    pci_bus_id: str | None = None
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: float | None = None
    processes: tuple[GpuProcess, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """An engine as a GPU backend may want to know it (the ``fake`` backend's readings move
    with it; ``nvml`` reads the real thing and ignores it).

    Attributes:
        name: the engine.
        pid: its process id (None before it started).
        gpus: the GPU indices it runs on.
        memory_mib: the GPU memory it holds on each of them.
        busy: how busy it is, 0 to 1 (running sequences over its batch, or KV cache in use).
    """

    name: str
    pid: int | None
    gpus: tuple[int, ...]
    memory_mib: float
    busy: float


@runtime_checkable
class GpuBackend(Protocol):
    """Where GPU readings come from. Calls are synchronous and fast (NVML answers in
    microseconds); the agent calls them from one task, never concurrently."""

    def read(self) -> list[GpuReading]:
        """Every GPU of this node, by index.

        Raises:
            GpuUnavailableError: the GPUs cannot be read any more (the driver went away).
        """
        ...

    def note_engines(self, engines: Sequence[EngineLoad]) -> None:
        """What the agent runs now, and how busy it is (called before each reading)."""
        ...

    def close(self) -> None: ...


GpuBackendFactory: TypeAlias = Callable[..., GpuBackend]
"""``register_gpu_backends``: ``factory(**options) -> GpuBackend``; raises
:class:`GpuUnavailableError` when there is nothing to read (say so once, do not retry)."""


@dataclass(frozen=True, slots=True)
class EngineDemand:
    """An engine that placement is asked to put on GPUs.

    Attributes:
        name: the engine (``<deployment>-<n>``), unique on the node.
        deployment: the deployment it is a replica of.
        memory_mib: the GPU memory it needs on each of its GPUs.
        gpus: how many GPUs it spans (tensor parallel).
        priority: higher is placed first; the ``priority`` strategy may displace lower ones.
    """

    name: str
    deployment: str
    memory_mib: float
    gpus: int
    priority: int


@dataclass(frozen=True, slots=True)
class PlacedEngine:
    """An engine already on GPUs (placed or running)."""

    name: str
    deployment: str
    memory_mib: float
    gpus: tuple[int, ...]
    priority: int


@dataclass(frozen=True, slots=True)
class GpuSlot:
    """A GPU as placement sees it.

    Attributes:
        index: the device index.
        name: its model name.
        memory_total_mib: its memory.
        memory_free_mib: what is free for new engines: the smaller of what the GPU reports
            free and its memory less what the agent's engines were given (an engine still
            loading has not allocated yet).
        utilization_pct: its utilization (None: unknown).
        engines: the engines on it.
    """

    index: int
    name: str
    memory_total_mib: float
    memory_free_mib: float
    utilization_pct: float | None = None
    engines: tuple[str, ...] = ()


@dataclass(slots=True)
class Placement:
    """A strategy's answer.

    Attributes:
        assigned: GPU indices per newly placed engine (``len == demand.gpus``, distinct).
        unplaced: why, per engine that fits nowhere (reported, never forced).
        displaced: running engines to stop so that higher-priority ones fit (``priority``
            only); their memory counts as free in ``assigned``.
    """

    assigned: dict[str, tuple[int, ...]] = field(default_factory=dict)
    unplaced: dict[str, str] = field(default_factory=dict)
    displaced: list[str] = field(default_factory=list)


@runtime_checkable
class PlacementStrategy(Protocol):
    """Chooses GPUs for engines. Pure: no I/O, the same answer for the same input."""

    def place(
        self,
        demands: Sequence[EngineDemand],
        gpus: Sequence[GpuSlot],
        running: Sequence[PlacedEngine],
    ) -> Placement:
        """Place ``demands`` on ``gpus`` (whose free memory already excludes ``running``)."""
        ...


PlacementStrategyFactory: TypeAlias = Callable[..., PlacementStrategy]
"""``register_placement_strategies``: ``factory(**options) -> PlacementStrategy``."""


@dataclass(frozen=True, slots=True)
class EngineEndpoint:
    """An engine as the gateway sees it: a backend of a model group.

    Attributes:
        backend: the backend's name in the gateway (``<node>-<engine>``), unique in the fleet.
        group: the model group it serves.
        url: its base URL (``http://host:port``, without ``/v1``: a backend's ``url``).
        model: the model name it answers to.
        price: the backend's ``price`` (``{"gpu_hour_usd": ...}``) when the node prices its
            GPUs; empty otherwise.
    """

    backend: str
    group: str
    url: str
    model: str
    price: Mapping[str, object] = field(default_factory=dict)


class EngineRegistrar(Protocol):
    """Tells the gateway fleet where engines are. Each call is idempotent (registering a
    registered backend, or deregistering a gone one, succeeds)."""

    async def register(self, engine: EngineEndpoint) -> None:
        """Add the engine as a backend of its group (serving from now on).

        Raises:
            ServiceUnavailableError: no gateway could be told (the agent retries).
        """
        ...

    async def drain(self, engine: EngineEndpoint) -> None:
        """Send it no new requests (in-flight ones finish)."""
        ...

    async def deregister(self, engine: EngineEndpoint) -> None:
        """Remove it."""
        ...

    async def aclose(self) -> None: ...


EngineRegistrarFactory: TypeAlias = Callable[..., EngineRegistrar]
"""``register_engine_registrars``: ``factory(**options) -> EngineRegistrar``."""
