"""Built-in plugin: the control plane's local parts: the ``redis`` and ``directory`` control
stores, the ``sqlite`` usage ledger, the ``directory`` record archive, ``log`` budget and metric
publishers, the ``file`` fleet scaler, and the ``gateway control`` commands."""

from gateway import hookimpl
from gateway.control import health_cli, keys_cli, publish_cli, rollup_cli, scaling_cli
from gateway.control.subcommands import control_command
from gateway.hookspecs import (
    RegisterBudgetPublisher,
    RegisterCommand,
    RegisterControlStore,
    RegisterFleetScaler,
    RegisterMetricPublisher,
    RegisterRecordArchive,
    RegisterUsageLedger,
)
from gateway_control.directory_archive import DirectoryArchive
from gateway_control.directory_store import DirectoryControlStore
from gateway_control.file_scaler import FileScaler
from gateway_control.log_publishers import LogBudgetPublisher, LogMetricPublisher
from gateway_control.redis_store import RedisControlStore
from gateway_control.sqlite_ledger import SqliteLedger


@hookimpl
def register_budget_publishers(register: RegisterBudgetPublisher) -> None:
    """Register ``log`` (the default)."""
    register("log", LogBudgetPublisher)


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """Register ``gateway control``."""
    jobs = [
        publish_cli.SUBCOMMAND,
        keys_cli.SUBCOMMAND,
        rollup_cli.SUBCOMMAND,
        health_cli.SUBCOMMAND,
        scaling_cli.SUBCOMMAND,
    ]
    register("control", control_command(jobs))


@hookimpl
def register_control_stores(register: RegisterControlStore) -> None:
    """Register ``directory`` and ``redis``."""
    register("directory", DirectoryControlStore)
    register("redis", RedisControlStore)


@hookimpl
def register_fleet_scalers(register: RegisterFleetScaler) -> None:
    """Register ``file``: desired replicas in a JSON file (``{path, initial}``)."""
    register("file", FileScaler)


@hookimpl
def register_metric_publishers(register: RegisterMetricPublisher) -> None:
    """Register ``log`` (the default)."""
    register("log", LogMetricPublisher)


@hookimpl
def register_record_archives(register: RegisterRecordArchive) -> None:
    """Register ``directory``."""
    register("directory", DirectoryArchive)


@hookimpl
def register_usage_ledgers(register: RegisterUsageLedger) -> None:
    """Register ``sqlite`` (the default)."""
    register("sqlite", SqliteLedger)
