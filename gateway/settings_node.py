"""The ``node:`` config section: one GPU box's node agent (``gateway node``; ``docs/node.md``).

A node's config file is a gateway config file: the same loader, ``${ENV}`` interpolation,
errors naming the file and field, and ``plugins:``; ``control.store`` (when set) is where the
agent takes scale orders from. Unknown keys are rejected.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from gateway.settings_base import NonNegativeFloat, PluginChoice, PositiveFloat, _Config

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
"""What a node's and a deployment's names may hold: they make backend names (``<node>-<engine>``)
that travel in admin API paths, and store keys."""

PLACEHOLDERS = ("model", "served_model", "host", "port", "gpus", "name", "memory_fraction")
"""What an engine's command may name in braces: ``{memory_fraction}`` is the deployment's
``memory_mib`` over its GPU's memory (vLLM's ``--gpu-memory-utilization``)."""
_BRACED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

DEFAULT_COMMAND = [
    "vllm",
    "serve",
    "{model}",
    "--host",
    "{host}",
    "--port",
    "{port}",
    "--tensor-parallel-size",
    "{gpus}",
    "--served-model-name",
    "{served_model}",
    "--gpu-memory-utilization",
    "{memory_fraction}",
]
"""How an engine starts unless its deployment says otherwise; ``{placeholders}`` are filled per
engine, and ``CUDA_VISIBLE_DEVICES`` is set to its GPUs."""


def _nvml() -> PluginChoice:
    return PluginChoice(backend="nvml")


def _best_fit() -> PluginChoice:
    return PluginChoice(backend="best_fit")


class DeploymentSettings(_Config):
    """Engines the node should run for one model group.

    Attributes:
        name: the deployment (engines are ``<name>-<n>``).
        model: what the engine loads (``vllm serve MODEL``).
        group: the gateway model group its engines serve.
        served_model: the model name the engine answers to (default: ``model``).
        memory_mib: GPU memory each engine needs on each of its GPUs.
        gpus: GPUs per engine (tensor parallel).
        priority: higher is placed first, and may displace lower ones (``priority``).
        replicas: engines to run until a scale order says otherwise.
        max_replicas: the most engines a scale order may ask of this node (default:
            ``replicas``, at least 1).
        command: the engine's argv, with the :data:`PLACEHOLDERS` filled in (default:
            :data:`DEFAULT_COMMAND`); other braces pass unchanged.
        env: extra environment variables for the engine.
        health_path: the engine's health check (200 when ready).
        startup_timeout_s: how long an engine may take to become healthy (loading weights).
    """

    name: str
    model: str
    group: str
    memory_mib: PositiveFloat
    served_model: str | None = None
    gpus: Annotated[int, msgspec.Meta(ge=1)] = 1
    priority: int = 0
    replicas: Annotated[int, msgspec.Meta(ge=0)] = 1
    max_replicas: Annotated[int, msgspec.Meta(ge=0)] | None = None
    command: list[str] | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    health_path: str = "/health"
    startup_timeout_s: PositiveFloat = 900.0

    @property
    def answers_to(self) -> str:
        return self.served_model or self.model

    @property
    def replica_ceiling(self) -> int:
        return self.max_replicas if self.max_replicas is not None else max(self.replicas, 1)


class NodeSettings(_Config):
    """One node agent.

    Attributes:
        name: the node's name in the fleet (default: the host name); backends it registers are
            ``<name>-<engine>``.
        host / port: where the agent serves ``/metrics``, ``/status`` and ``/health``
            (9400: dcgm-exporter's port, whose names it exports).
        advertise_host: the address engines listen on and are registered with.
        engine_ports: the first port engines are given (one per engine, counting up).
        gpus: the GPU backend (``nvml``; ``fake``: ``{gpus: [{name, memory_mib}...]}``).
        placement: the placement strategy (``best_fit``, ``least_utilized``, ``priority``,
            ``round_robin``).
        registrar: how the gateway learns of engines (``gateway_admin``: ``{gateway_urls,
            master_key}``); None: engines are not registered.
        deployments: the engines to run.
        gpu_hour_usd: price per GPU hour by GPU model name (``NVIDIA H200: 3.5``): the fleet's
            cost per hour, each engine's cost per million tokens, and the price of the
            backends it registers.
        read_interval_s: how often GPUs are read (and metrics refreshed).
        restart_backoff_s / restart_backoff_max_s: the first and the longest wait before a
            crashed engine is started again (doubling in between; reset after it served).
        drain_s: how long a draining engine keeps its in-flight requests before it is stopped.
        stop_timeout_s: how long after SIGTERM an engine's process group gets SIGKILL.
        follow_orders: take scale orders from ``control.store`` (fleet scaler ``node_agents``).
        order_interval_s: how often orders are read.
    """

    name: str | None = None
    host: str = "127.0.0.1"
    port: Port = 9400
    advertise_host: str = "127.0.0.1"
    engine_ports: Port = 8100
    gpus: PluginChoice = msgspec.field(default_factory=_nvml)
    placement: PluginChoice = msgspec.field(default_factory=_best_fit)
    registrar: PluginChoice | None = None
    deployments: list[DeploymentSettings] = msgspec.field(default_factory=list)
    gpu_hour_usd: dict[str, NonNegativeFloat] = msgspec.field(default_factory=dict)
    read_interval_s: PositiveFloat = 1.0
    restart_backoff_s: PositiveFloat = 1.0
    restart_backoff_max_s: PositiveFloat = 60.0
    drain_s: NonNegativeFloat = 5.0
    stop_timeout_s: PositiveFloat = 30.0
    follow_orders: bool = True
    order_interval_s: PositiveFloat = 1.0

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field rules a schema cannot express, as ``(field, problem)`` (empty: none)."""
        found: list[tuple[str, str]] = []
        if self.name is not None and not _NAME.fullmatch(self.name):
            found.append(("name", f"letters, digits, `_`, `.` and `-` only, got `{self.name}`"))
        seen: dict[str, int] = {}
        for i, deployment in enumerate(self.deployments):
            if not _NAME.fullmatch(deployment.name):
                found.append(
                    (
                        f"deployments[{i}].name",
                        f"letters, digits, `_`, `.` and `-` only, got `{deployment.name}`",
                    )
                )
            if deployment.name in seen:
                found.append(
                    (
                        f"deployments[{i}].name",
                        f"`{deployment.name}` is already deployments[{seen[deployment.name]}]",
                    )
                )
            seen.setdefault(deployment.name, i)
            if deployment.command is not None and not deployment.command:
                found.append((f"deployments[{i}].command", "empty: leave it out for vllm serve"))
            for part in deployment.command or ():
                unknown = [n for n in _BRACED.findall(part) if n not in PLACEHOLDERS]
                if unknown:
                    found.append(
                        (
                            f"deployments[{i}].command",
                            f"unknown placeholder `{{{unknown[0]}}}`; known: "
                            + ", ".join(f"{{{n}}}" for n in PLACEHOLDERS),
                        )
                    )
            ceiling = deployment.max_replicas
            if ceiling is not None and ceiling < deployment.replicas:
                found.append(
                    (
                        f"deployments[{i}].max_replicas",
                        f"{deployment.max_replicas} is below `replicas` ({deployment.replicas})",
                    )
                )
            if not deployment.health_path.startswith("/"):
                found.append((f"deployments[{i}].health_path", "must start with `/`"))
        return found
