"""Built-in plugin: the load-test harness and its ``gateway load`` command."""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import RegisterCommand
from gateway_loadgen.cli import LOAD_COMMAND


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """Register ``gateway load``."""
    register("load", LOAD_COMMAND)
