"""Built-in plugin: usage sinks (``sqlite``, ``jsonl``, ``redis``) and alert sinks (``log``,
``webhook``, ``redis``), and the ``gateway spend`` command (a client of ``/admin/spend``)."""

from gateway import hookimpl
from gateway.governance.spend_cli import SPEND_COMMAND
from gateway.hookspecs import RegisterAlertSink, RegisterCommand, RegisterUsageSink
from gateway_usage.alert_sinks import LogAlertSink, RedisAlertSink, WebhookAlertSink
from gateway_usage.jsonl_sink import JsonlUsageSink
from gateway_usage.redis_sink import RedisUsageSink
from gateway_usage.sqlite_sink import SqliteUsageSink


@hookimpl
def register_usage_sinks(register: RegisterUsageSink) -> None:
    """Register ``sqlite`` (the default, which answers spend reports), ``jsonl`` and
    ``redis``."""
    register("sqlite", SqliteUsageSink)
    register("jsonl", JsonlUsageSink)
    register("redis", RedisUsageSink)


@hookimpl
def register_alert_sinks(register: RegisterAlertSink) -> None:
    """Register ``log`` (the default), ``webhook`` and ``redis``."""
    register("log", LogAlertSink)
    register("webhook", WebhookAlertSink)
    register("redis", RedisAlertSink)


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """Register ``spend``."""
    register("spend", SPEND_COMMAND)
