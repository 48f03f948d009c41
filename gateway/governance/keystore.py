"""The key-store contract (``register_key_stores``): where virtual keys and tenants live.

Built-ins: ``config`` (declared in the YAML, read-only), ``sqlite`` (one box; the embedded
default), ``redis`` (shared by every replica). The data plane never reads a store per request:
:mod:`gateway.governance.directory` caches lookups for a short time and drops an entry as soon as
the store reports a change (:meth:`KeyStore.changes`), so that a revoked or blocked key is refused
by every replica within a second.

Writes are whole records (the admin API reads, changes and writes back); a store must make each
write atomic, so that a failed write leaves the previous record as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from gateway.governance.records import KeyRecord, TenantRecord


class KeyStoreError(Exception):
    """A store could not do what was asked; ``status`` is the admin API's answer."""

    status = 503


class KeyStoreUnavailableError(KeyStoreError):
    """The store cannot be reached (503)."""


class ReadOnlyStoreError(KeyStoreError):
    """The store does not take writes (``config``: edit the file) (405)."""

    status = 405


class ConflictError(KeyStoreError):
    """A record with that id or name exists already, or a tenant still has keys (409)."""

    status = 409


@dataclass(frozen=True, slots=True)
class Change:
    """A record that changed (created, updated, revoked, deleted): drop it from caches.

    ``kind`` ``all`` (``id`` empty) drops everything: a store yields it first whenever its feed
    has (re)subscribed, because changes made before then were not delivered; from that change on
    the feed is live, so a cache may trust its entries for longer.
    """

    kind: Literal["key", "tenant", "all"]
    id: str


@runtime_checkable
class KeyStore(Protocol):
    """Virtual keys and tenants. Every method may raise :class:`KeyStoreUnavailableError`."""

    @property
    def writable(self) -> bool:
        """Whether :meth:`put_key` and friends work (False raises ReadOnlyStoreError)."""
        ...

    async def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with public id ``key_id``, revoked ones included; None when unknown."""
        ...

    async def get_tenant(self, name: str) -> TenantRecord | None:
        """The tenant called ``name``; None when unknown."""
        ...

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        """Every key (of ``tenant`` when given), sorted by ``created_at`` then id."""
        ...

    async def list_tenants(self) -> list[TenantRecord]:
        """Every tenant, sorted by name."""
        ...

    async def put_key(self, record: KeyRecord, *, create: bool) -> None:
        """Store ``record``; ``create`` requires that its id is new, else that it exists.

        Raises:
            ConflictError: ``create`` and the id exists.
            KeyError: not ``create`` and the id is unknown.
        """
        ...

    async def put_tenant(self, record: TenantRecord, *, create: bool) -> None:
        """Store ``record`` (same rules as :meth:`put_key`, by name)."""
        ...

    async def delete_tenant(self, name: str) -> None:
        """Remove a tenant that has no keys.

        Raises:
            ConflictError: it still has keys (revoked ones included).
            KeyError: unknown.
        """
        ...

    def changes(self) -> AsyncIterator[Change] | None:
        """Changes made anywhere (another replica included) as they happen, for cache
        invalidation; None when the store cannot tell (caches then expire by time only).
        The iterator ends when the store is closed; it may raise
        :class:`KeyStoreUnavailableError`, after which the caller calls this again. Its first
        item, once subscribed, is ``Change("all", "")``."""
        ...

    async def aclose(self) -> None:
        """Release connections (once, at shutdown)."""
        ...


KeyStoreFactory: TypeAlias = Callable[..., KeyStore]
"""What ``register_key_stores`` registers: called with the store's options as keyword arguments
(``config`` takes its ``tenants`` and ``keys`` there), ``clock`` (the gateway's
:class:`~gateway.clock.Clock`) and ``pepper`` (bytes: the HMAC key of secret hashes, from
:func:`gateway.governance.pepper.load_pepper`; ``config`` hashes the full keys it declares with
it, the others may ignore it); ``TypeError``/``ValueError`` become config errors."""
