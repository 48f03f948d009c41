"""Built-in plugin: the control plane's local parts: the ``redis`` and ``directory`` control
stores, the ``sqlite`` usage ledger, the ``directory`` record archive, ``log`` budget and metric
publishers, and the ``gateway control`` commands."""

from gateway import hookimpl
from gateway.control.keys_cli import SUBCOMMAND as KEYS
from gateway.control.subcommands import control_command
from gateway.hookspecs import RegisterCommand


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """``gateway control <job>``."""
    register("control", control_command([KEYS]))
