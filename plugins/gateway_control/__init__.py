"""Built-in plugin: the control plane's local parts: the ``redis`` and ``directory`` control
stores, the ``sqlite`` usage ledger, the ``directory`` record archive, ``log`` budget and metric
publishers, and the ``gateway control`` commands."""

from gateway import hookimpl
from gateway.control import keys_cli, publish_cli
from gateway.control.subcommands import control_command
from gateway.hookspecs import RegisterCommand, RegisterControlStore
from gateway_control.directory_store import DirectoryControlStore
from gateway_control.redis_store import RedisControlStore


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """Register ``gateway control``."""
    register("control", control_command([publish_cli.SUBCOMMAND, keys_cli.SUBCOMMAND]))


@hookimpl
def register_control_stores(register: RegisterControlStore) -> None:
    """Register ``directory`` and ``redis``."""
    register("directory", DirectoryControlStore)
    register("redis", RedisControlStore)
