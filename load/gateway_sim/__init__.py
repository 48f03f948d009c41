"""Built-in plugin: the vLLM-compatible backend simulator and its ``gateway sim`` command."""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import Register
from gateway_sim.cli import SIM_COMMAND


@hookimpl
def register_commands(register: Register) -> None:
    """Register ``gateway sim``."""
    register("sim", SIM_COMMAND)
