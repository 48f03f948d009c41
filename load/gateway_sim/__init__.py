"""Built-in plugin: the vLLM-compatible backend simulator, its ``gateway sim`` command, and the
embedded default (two in-process replicas served as ``sim-chat`` when nothing is configured)."""

from __future__ import annotations

from gateway import hookimpl
from gateway.defaults import EmbeddedBackends
from gateway.hookspecs import RegisterCommand, RegisterEmbeddedDefault
from gateway_sim.cli import SIM_COMMAND

SIM_GROUP = "sim-chat"
SIM_MODEL = "sim-model"
REPLICAS = 2


class SimulatorDefault:
    """An ``EmbeddedDefault``: simulator replicas on free loopback ports, for the process's life."""

    def start(self) -> EmbeddedBackends:
        from gateway.server import BackgroundServer
        from gateway_sim.app import SimConfig, create_sim_app

        urls = [BackgroundServer(create_sim_app(SimConfig())).start().url for _ in range(REPLICAS)]
        backends = [
            {"provider": "vllm", "url": url, "model": SIM_MODEL, "name": f"sim-{i}"}
            for i, url in enumerate(urls)
        ]
        return EmbeddedBackends(
            models=[{"name": SIM_GROUP, "backends": backends, "owned_by": "simulator"}],
            description="in-process simulator",
            note=f"started {REPLICAS} simulator replicas ({', '.join(urls)}) "
            f"as model `{SIM_GROUP}`",
        )


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """Register ``gateway sim``."""
    register("sim", SIM_COMMAND)


@hookimpl
def register_embedded_defaults(register: RegisterEmbeddedDefault) -> None:
    """Register ``simulator``: two in-process replicas as model ``sim-chat``."""
    register("simulator", SimulatorDefault())
