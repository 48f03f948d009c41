"""Built-in plugin: the ``redis`` response store, shared by every replica of a fleet (see
:mod:`gateway_store_redis.store` for its options)."""

from gateway import hookimpl
from gateway.hookspecs import RegisterResponseStore
from gateway_store_redis.store import RedisResponseStore


@hookimpl
def register_response_stores(register: RegisterResponseStore) -> None:
    """Register ``redis``."""
    register("redis", RedisResponseStore)
