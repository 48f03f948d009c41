"""The node agent: keeps the engines the node should run placed, running and registered, reads
its GPUs, and follows the control plane's scale orders.

Two loops, one task each, until :meth:`NodeAgent.run` is cancelled or :meth:`stop` is called:

- **read** (every ``node.read_interval_s``): each ready engine's load, told to the GPU backend
  (``note_engines``), then the GPUs read; the readings are what ``/metrics`` and ``/status``
  show and what placement sees. Every few seconds, the tokens the gateway fleet served through
  each engine (``control.gateway_urls``), for the cost per million tokens.
- **reconcile** (every ``node.order_interval_s``): the engines wanted per deployment (its
  ``replicas``, or this node's share of a scale order), extra ones drained and stopped (highest
  number first), missing ones placed by the placement strategy and started; an engine that fits
  nowhere is reported in ``unplaced``, never forced; engines a higher-priority one displaces are
  stopped before it starts. The node's status goes to the shared store for the ``node_agents``
  scaler.

Engines are registered with the gateway when healthy and deregistered when they stop serving
(crash, stop); a stop drains first: the gateway sends no new requests, the in-flight ones get
``node.drain_s`` (or less, once the engine is idle), then SIGTERM. :meth:`stop` does that for
every engine, concurrently, and returns when no process is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gateway.control.base import ControlStore
from gateway.node import orders as scale_orders
from gateway.node.base import (
    EngineDemand,
    EngineEndpoint,
    EngineLoad,
    EngineRegistrar,
    GpuBackend,
    GpuReading,
    GpuSlot,
    GpuUnavailableError,
    PlacedEngine,
    PlacementStrategy,
)
from gateway.node.cost import backend_price, engine_usd_per_hour
from gateway.node.engines import Engine, EngineSpec, Supervision, engine_argv
from gateway.node.meter import EngineMeter, served_tokens
from gateway.routing.base import EngineMetrics
from gateway.settings import Settings
from gateway.settings_node import DEFAULT_COMMAND, DeploymentSettings, NodeSettings

log = logging.getLogger("gateway.node")

TOKENS_EVERY_S = 5.0
"""How often the gateway fleet's token counts are read."""

REREGISTER_S = 30.0
"""How often serving engines are registered again (idempotent)."""

TELL_EVERY_S = 2.0
"""How often deregistrations that failed are tried again (and re-registration is due)."""


@dataclass
class EngineRecord:
    """What the agent knows of one engine beside its process."""

    engine: Engine
    task: asyncio.Task[None]
    endpoint: EngineEndpoint
    usd_per_hour: float | None
    load: EngineMetrics | None = None
    tokens: int = 0
    stopping: bool = False
    served_s: float = 0.0  # time ready, summed over restarts (what the tokens were made in)


@dataclass
class NodeParts:
    """What the agent runs with (built from the config by :mod:`gateway.node.runtime`)."""

    gpus: GpuBackend
    strategy: PlacementStrategy
    registrar: EngineRegistrar | None
    store: ControlStore | None
    meter: EngineMeter
    http: aiohttp.ClientSession


@dataclass
class NodeAgent:
    """One node's agent (see the module docstring)."""

    settings: Settings
    parts: NodeParts
    engines: dict[str, EngineRecord] = field(default_factory=dict)
    readings: list[GpuReading] = field(default_factory=list)
    unplaced: dict[str, str] = field(default_factory=dict)
    wanted: dict[str, int] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    _tokens_read_at: float = 0.0
    _registered_at: float = 0.0
    _shares: dict[str, int] = field(default_factory=dict)
    _store_error: str | None = None
    gpu_error: str | None = None
    # Backends whose deregistration failed, with the port their engine had: tried again, and
    # neither the name nor the port is given to a new engine until it succeeds.
    pending_deregistration: dict[str, tuple[EngineEndpoint, int]] = field(default_factory=dict)

    @property
    def node(self) -> NodeSettings:
        assert self.settings.node is not None
        return self.settings.node

    @property
    def name(self) -> str:
        return self.node.name or socket.gethostname()

    async def run(self) -> None:
        """Read and reconcile until :meth:`stop`."""
        self.readings = self.parts.gpus.read()
        await asyncio.gather(
            self._every(self.node.read_interval_s, self.read_once),
            self._every(self.node.order_interval_s, self.reconcile_once),
            self._every(TELL_EVERY_S, self.tell_gateways),
        )

    async def stop(self) -> None:
        """Drain and stop every engine (concurrently), deregistering each; then the loops.
        No engine is started once this began."""
        self._stopping = True
        records = list(self.engines.values())
        await asyncio.gather(*(self._stop_engine(r) for r in records), return_exceptions=True)
        self._stopped.set()

    async def _every(self, interval_s: float, step: Any) -> None:
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                await step()
            except Exception:
                log.exception("node agent: %s failed", step.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopped.wait(), max(interval_s - (time.monotonic() - started), 0.01)
                )

    # -- reading ---------------------------------------------------------------------------

    async def read_once(self) -> None:
        """Read the engines' load, tell the GPU backend, read the GPUs."""
        ready = [r for r in self.engines.values() if r.engine.serving]
        timeout = min(self.node.read_interval_s, 2.0)
        loads = await asyncio.gather(
            *(
                self.parts.meter.load(
                    r.engine.spec.name, r.engine.spec.url, r.endpoint.model, timeout
                )
                for r in ready
            )
        )
        for record, load in zip(ready, loads, strict=True):
            record.load = load if load is not None else record.load
            record.served_s += self.node.read_interval_s
        self.parts.gpus.note_engines([_engine_load(r) for r in self.engines.values()])
        try:
            self.readings = self.parts.gpus.read()
        except GpuUnavailableError as exc:
            if self.gpu_error is None:
                log.error("the GPUs can no longer be read: %s", exc)
            # Old figures must not pass for current ones; placement sees no GPU.
            self.readings, self.gpu_error = [], str(exc)
        else:
            if self.gpu_error is not None:
                log.warning("the GPUs can be read again")
            self.gpu_error = None
        urls = self.settings.control.gateway_urls
        if urls and time.monotonic() - self._tokens_read_at >= TOKENS_EVERY_S:
            self._tokens_read_at = time.monotonic()
            tokens = await served_tokens(self.parts.http, urls, timeout)
            if tokens is not None:
                for record in self.engines.values():
                    record.tokens = tokens.get(record.endpoint.backend, record.tokens)

    # -- reconciling -----------------------------------------------------------------------

    async def reconcile_once(self) -> None:
        """Bring the running engines to what is wanted (see the module docstring)."""
        if self._stopping:
            return
        if self.node.follow_orders and self.parts.store is not None:
            await self._read_orders()
        if self._stopping:  # stop() began while the store answered: start nothing
            return
        # From here to the status publication nothing awaits: stop() cannot interleave.
        self.wanted = wanted_counts(self.node.deployments, self._shares)
        demands: list[EngineDemand] = []
        for deployment in self.node.deployments:
            mine = sorted(
                (
                    r
                    for r in self.engines.values()
                    if r.engine.spec.deployment == deployment.name and not r.stopping
                ),
                key=lambda r: _number(r.engine.spec.name),
            )
            extra = len(mine) - self.wanted[deployment.name]
            for record in reversed(mine[len(mine) - extra :] if extra > 0 else []):
                self._spawn_stop(record)
            if extra < 0:
                taken = self._taken_numbers(deployment.name)
                numbers = [n for n in range(len(taken) - extra) if n not in taken]
                demands.extend(
                    EngineDemand(
                        name=f"{deployment.name}-{n}",
                        deployment=deployment.name,
                        memory_mib=deployment.memory_mib,
                        gpus=deployment.gpus,
                        priority=deployment.priority,
                    )
                    for n in numbers[:-extra]
                )
        placement = self.parts.strategy.place(demands, self.slots(), self.placed())
        displaced = [self.engines[n] for n in placement.displaced if n in self.engines]
        stops = [self._spawn_stop(r) for r in displaced]
        by_name = {d.name: d for d in demands}
        if placement.unplaced != self.unplaced:
            for name, why in placement.unplaced.items():
                log.warning("engine %s not placed: %s", name, why)
        self.unplaced = dict(placement.unplaced)
        for name, gpus in placement.assigned.items():
            self._start(by_name[name], gpus, stops)
        if self.parts.store is not None:
            try:
                await scale_orders.publish_node_status(
                    self.parts.store, self.name, self.group_statuses(), time.time()
                )
            except Exception as exc:  # noqa: BLE001 - published again next pass
                self._store_failed(exc)

    def _taken_numbers(self, deployment: str) -> set[int]:
        """The engine numbers of ``deployment`` in use: engines running or stopping, and
        backends whose deregistration is pending."""
        names = set(self.engines) | {
            endpoint.backend.removeprefix(f"{self.name}-")
            for endpoint, _ in self.pending_deregistration.values()
        }
        prefix = f"{deployment}-"
        return {
            int(name[len(prefix) :])
            for name in names
            if name.startswith(prefix) and name[len(prefix) :].isdigit()
        }

    async def tell_gateways(self) -> None:
        """Deregistrations that failed, tried again; and every :data:`REREGISTER_S`, every
        serving engine registered again (a gateway replica that restarted, or started later,
        learns of them). Concurrent, in a loop of its own: a gateway that does not answer
        delays nothing else."""
        registrar = self.parts.registrar
        if registrar is None:
            return
        pending = list(self.pending_deregistration.items())
        results = await asyncio.gather(
            *(registrar.deregister(endpoint) for _, (endpoint, _) in pending),
            return_exceptions=True,
        )
        for (backend, _), result in zip(pending, results, strict=True):
            if not isinstance(result, BaseException):
                del self.pending_deregistration[backend]
        if time.monotonic() - self._registered_at < REREGISTER_S:
            return
        self._registered_at = time.monotonic()
        serving = [r for r in self.engines.values() if r.engine.serving and not r.stopping]
        results = await asyncio.gather(
            *(registrar.register(r.endpoint) for r in serving), return_exceptions=True
        )
        for record, result in zip(serving, results, strict=True):
            if isinstance(result, Exception):
                log.warning("engine %s: not registered again: %s", record.engine.spec.name, result)

    async def _read_orders(self) -> None:
        """The orders and this node's share of each, for a group it serves; the last ones
        stand while the store cannot be read (the engines keep running)."""
        assert self.parts.store is not None
        try:
            self.orders = await scale_orders.read_orders(self.parts.store)
            statuses = await scale_orders.node_statuses(self.parts.store)
        except Exception as exc:  # noqa: BLE001 - a store outage only pauses the orders
            self._store_failed(exc)
            return
        if self._store_error is not None:
            log.warning("the shared store answers again")
            self._store_error = None
        mine = {d.group for d in self.node.deployments}
        now = time.time()
        self._shares = {
            group: scale_orders.share(
                replicas, scale_orders.serving(statuses, group, now, self._stale_s), self.name
            )
            for group, replicas in self.orders.items()
            if group in mine
        }

    def _store_failed(self, exc: Exception) -> None:
        if self._store_error is None:
            log.warning(
                "the shared store cannot be read or written (%s): the last orders stand", exc
            )
        self._store_error = str(exc)

    @property
    def _stale_s(self) -> float:
        return max(3 * self.node.order_interval_s, 10.0)

    def slots(self) -> list[GpuSlot]:
        """The GPUs as placement sees them: free memory less what the engines were given."""
        given: dict[int, float] = {}
        names: dict[int, list[str]] = {}
        for record in self.engines.values():
            for gpu in record.engine.spec.gpus:
                given[gpu] = given.get(gpu, 0.0) + record.engine.spec.memory_mib
                names.setdefault(gpu, []).append(record.engine.spec.name)
        return [
            GpuSlot(
                index=r.index,
                name=r.name,
                memory_total_mib=r.memory_total_mib,
                memory_free_mib=max(
                    0.0, min(r.memory_free_mib, r.memory_total_mib - given.get(r.index, 0.0))
                ),
                utilization_pct=r.utilization_pct,
                engines=tuple(sorted(names.get(r.index, []))),
            )
            for r in self.readings
        ]

    def placed(self) -> list[PlacedEngine]:
        return [
            PlacedEngine(
                name=r.engine.spec.name,
                deployment=r.engine.spec.deployment,
                memory_mib=r.engine.spec.memory_mib,
                gpus=r.engine.spec.gpus,
                priority=r.engine.spec.priority,
            )
            for r in self.engines.values()
            if not r.stopping
        ]

    def group_statuses(self) -> dict[str, scale_orders.GroupStatus]:
        out: dict[str, scale_orders.GroupStatus] = {}
        for deployment in self.node.deployments:
            status = out.setdefault(deployment.group, scale_orders.GroupStatus(0, 0, 0))
            records = [
                r
                for r in self.engines.values()
                if r.engine.spec.deployment == deployment.name and not r.stopping
            ]
            out[deployment.group] = scale_orders.GroupStatus(
                running=status.running + len(records),
                ready=status.ready + sum(r.engine.serving for r in records),
                capacity=status.capacity + deployment.replica_ceiling,
            )
        return out

    def _start(
        self, demand: EngineDemand, gpus: tuple[int, ...], after: Sequence[asyncio.Task[None]]
    ) -> None:
        if self._stopping:
            return
        deployment = next(d for d in self.node.deployments if d.name == demand.deployment)
        port = self._free_port()
        if port is None:
            self.unplaced[demand.name] = f"no free engine port from {self.node.engine_ports} up"
            return
        total = min((r.memory_total_mib for r in self.readings if r.index in gpus), default=0.0)
        fraction = min(deployment.memory_mib / total, 1.0) if total else 0.9
        spec = EngineSpec(
            name=demand.name,
            deployment=deployment.name,
            group=deployment.group,
            model=deployment.answers_to,
            argv=engine_argv(
                deployment.command or DEFAULT_COMMAND,
                {
                    "model": deployment.model,
                    "served_model": deployment.answers_to,
                    "host": self.node.advertise_host,
                    "port": str(port),
                    "gpus": str(deployment.gpus),
                    "name": demand.name,
                    "memory_fraction": f"{fraction:.3f}",
                },
            ),
            env={**deployment.env, "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))},
            host=self.node.advertise_host,
            port=port,
            gpus=gpus,
            memory_mib=deployment.memory_mib,
            priority=deployment.priority,
            health_path=deployment.health_path,
            startup_timeout_s=deployment.startup_timeout_s,
        )
        gpu_names = [r.name for r in self.readings if r.index in gpus]
        usd_per_hour = engine_usd_per_hour(gpu_names, self.node.gpu_hour_usd)
        endpoint = EngineEndpoint(
            backend=f"{self.name}-{demand.name}",
            group=deployment.group,
            url=spec.url,
            model=spec.model,
            price=backend_price(usd_per_hour) if usd_per_hour is not None else {},
        )
        engine = Engine(
            spec,
            Supervision(
                restart_backoff_s=self.node.restart_backoff_s,
                restart_backoff_max_s=self.node.restart_backoff_max_s,
                stop_timeout_s=self.node.stop_timeout_s,
            ),
            self.parts.http,
            on_ready=self._register,
            on_down=self._deregister,
        )

        async def start() -> None:
            await asyncio.gather(*after, return_exceptions=True)  # displaced engines gone first
            await engine.run()

        task = asyncio.create_task(start(), name=f"engine {demand.name}")
        self.engines[demand.name] = EngineRecord(engine, task, endpoint, usd_per_hour)

    def _free_port(self) -> int | None:
        """The lowest port from ``engine_ports`` that no engine of this agent holds (nor one
        whose deregistration is pending) and that nothing else listens on; None: none left."""
        used = {r.engine.spec.port for r in self.engines.values()}
        used |= {port for _, port in self.pending_deregistration.values()}
        used.add(self.node.port)
        for port in range(self.node.engine_ports, 65536):
            if port not in used and _bindable(self.node.advertise_host, port):
                return port
        return None

    def _spawn_stop(self, record: EngineRecord) -> asyncio.Task[None]:
        record.stopping = True
        return asyncio.create_task(
            self._stop_engine(record), name=f"stop {record.engine.spec.name}"
        )

    async def _stop_engine(self, record: EngineRecord) -> None:
        record.stopping = True

        async def drain() -> None:
            if self.parts.registrar is not None:
                with contextlib.suppress(Exception):
                    await self.parts.registrar.drain(record.endpoint)
            await self._wait_idle(record)

        await record.engine.stop(drain)
        await asyncio.gather(record.task, return_exceptions=True)
        self.parts.meter.forget(record.engine.spec.name)
        if self.engines.get(record.engine.spec.name) is record:
            del self.engines[record.engine.spec.name]

    async def _wait_idle(self, record: EngineRecord) -> None:
        """Up to ``drain_s``, until the engine has nothing running or queued."""
        deadline = time.monotonic() + self.node.drain_s
        while time.monotonic() < deadline:
            load = await self.parts.meter.load(
                record.engine.spec.name, record.engine.spec.url, record.endpoint.model, 1.0
            )
            if load is not None and load.running + load.waiting == 0:
                return
            await asyncio.sleep(0.1)

    async def _register(self, engine: Engine) -> None:
        if self.parts.registrar is not None:
            await self.parts.registrar.register(self._endpoint_of(engine))

    async def _deregister(self, engine: Engine) -> None:
        if self.parts.registrar is None:
            return
        endpoint = self._endpoint_of(engine)
        try:
            await self.parts.registrar.deregister(endpoint)
        except Exception as exc:  # noqa: BLE001 - tried again by tell_gateways
            log.warning(
                "engine %s: deregistration failed (%s); trying again", engine.spec.name, exc
            )
            self.pending_deregistration[endpoint.backend] = (endpoint, engine.spec.port)

    def _endpoint_of(self, engine: Engine) -> EngineEndpoint:
        return self.engines[engine.spec.name].endpoint


def wanted_counts(
    deployments: Sequence[DeploymentSettings], shares: Mapping[str, int]
) -> dict[str, int]:
    """Engines wanted per deployment: its ``replicas``, or, for a group with a scale order,
    this node's share of it spread over the group's deployments in order, each up to its
    ``max_replicas``."""
    wanted = {d.name: d.replicas for d in deployments}
    for group, share in shares.items():
        left = share
        for deployment in (d for d in deployments if d.group == group):
            wanted[deployment.name] = min(left, deployment.replica_ceiling)
            left -= wanted[deployment.name]
    return wanted


def _bindable(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` now (an engine there would be another's)."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _number(engine: str) -> int:
    return int(engine.rsplit("-", 1)[1])


def _engine_load(record: EngineRecord) -> EngineLoad:
    # A GPU's utilization is the share of time a kernel runs: an engine with a batch running
    # keeps it at about 100%, an idle one at 0.
    load = record.load
    busy = 1.0 if load is not None and record.engine.serving and load.running > 0 else 0.0
    return EngineLoad(
        name=record.engine.spec.name,
        pid=record.engine.pid,
        gpus=record.engine.spec.gpus,
        memory_mib=record.engine.spec.memory_mib if record.engine.pid else 0.0,
        busy=busy,
    )
