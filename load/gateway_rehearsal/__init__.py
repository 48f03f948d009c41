"""The fleet on one machine: Redis, gateway replicas behind nginx, simulators and the
control-plane jobs, started and stopped by one command (``gateway rehearse``)."""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import RegisterCommand
from gateway_rehearsal.cli import REHEARSE_COMMAND


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """Register ``gateway rehearse``."""
    register("rehearse", REHEARSE_COMMAND)
