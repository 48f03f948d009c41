"""Built-in plugin: the ``memory`` (one process) and ``redis`` (a fleet) limiters (see
:mod:`gateway_limits.memory` and :mod:`gateway_limits.redis_limiter` for their options)."""

from gateway import hookimpl
from gateway.hookspecs import RegisterLimiter
from gateway_limits.memory import MemoryLimiter
from gateway_limits.redis_limiter import RedisLimiter


@hookimpl
def register_limiters(register: RegisterLimiter) -> None:
    """Register ``memory`` and ``redis``."""
    register("memory", MemoryLimiter)
    register("redis", RedisLimiter)
