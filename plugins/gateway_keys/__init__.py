"""Built-in plugin: the ``config``, ``sqlite`` and ``redis`` key stores."""

from gateway import hookimpl
from gateway.hookspecs import RegisterKeyStore
from gateway_keys.config_store import ConfigKeyStore
from gateway_keys.redis_store import RedisKeyStore
from gateway_keys.sqlite_store import SqliteKeyStore


@hookimpl
def register_key_stores(register: RegisterKeyStore) -> None:
    """Register ``config``, ``sqlite`` and ``redis``."""
    register("config", ConfigKeyStore)
    register("sqlite", SqliteKeyStore)
    register("redis", RedisKeyStore)
