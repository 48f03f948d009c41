"""Built-in plugin: the ``config``, ``sqlite`` and ``redis`` key stores, and the ``gateway keys``
and ``gateway tenants`` commands (clients of the admin API)."""

from gateway import hookimpl
from gateway.governance.cli import KEYS_COMMAND, TENANTS_COMMAND
from gateway.hookspecs import RegisterCommand, RegisterKeyStore
from gateway_keys.config_store import ConfigKeyStore
from gateway_keys.redis_store import RedisKeyStore
from gateway_keys.sqlite_store import SqliteKeyStore


@hookimpl
def register_key_stores(register: RegisterKeyStore) -> None:
    """Register ``config``, ``sqlite`` and ``redis``."""
    register("config", ConfigKeyStore)
    register("sqlite", SqliteKeyStore)
    register("redis", RedisKeyStore)


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    """Register ``keys`` and ``tenants``."""
    register("keys", KEYS_COMMAND)
    register("tenants", TENANTS_COMMAND)
