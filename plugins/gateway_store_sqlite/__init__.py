"""Built-in plugin: the ``sqlite`` response store, the embedded default for one box (a real
SQLite file; see :mod:`gateway_store_sqlite.store` for its options)."""

from gateway import hookimpl
from gateway.hookspecs import RegisterResponseStore
from gateway_store_sqlite.store import SqliteResponseStore


@hookimpl
def register_response_stores(register: RegisterResponseStore) -> None:
    """Register ``sqlite``."""
    register("sqlite", SqliteResponseStore)
