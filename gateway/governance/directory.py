"""The key directory: the data plane's view of virtual keys, cached in front of the key store.

:meth:`KeyDirectory.authenticate` runs for every request that presents an ``sk-gw-`` key. A
cache hit is a dict lookup, one HMAC and a few comparisons, with no I/O; the secret is verified
on every call, hit or miss. A miss reads the key, then its tenant; concurrent misses for one id
share one read, and unknown ids are remembered as unknown for as long as a record would be.

How long an entry is trusted:

- ``ttl_s`` (``governance.key_cache_ttl_s``, 1 s by default) while the store cannot push
  changes: a revocation made anywhere is refused everywhere within it;
- ``pushed_ttl_s`` while the store's change feed is connected (:meth:`run` consumes it and drops
  each changed record at once); the moment the feed drops, every entry is judged by ``ttl_s``
  again, and when it comes back the whole cache is dropped (changes in between were missed).

When the store is unreachable on a miss, a stale entry is served (and trusted for another
``ttl_s`` before the store is tried again); with none, the request fails with a 503.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import anyio

from gateway.clock import Clock
from gateway.closing import close_chunks
from gateway.errors import AuthenticationError, PermissionDeniedError, ServiceUnavailableError
from gateway.governance.accounts import principal_for
from gateway.governance.keystore import Change, KeyStore, KeyStoreUnavailableError
from gateway.governance.records import KeyRecord, TenantRecord, parse_key, secret_matches
from gateway.identity import Principal

log = logging.getLogger("gateway.governance")

_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 5.0


@dataclass(slots=True)
class _Entry:
    key: KeyRecord
    tenant: TenantRecord | None
    principal: Principal
    fetched_at: float  # monotonic: when the read that produced it began


@dataclass(slots=True)
class _Load:
    """A store read in flight; ``stale`` when a change arrived meanwhile (do not cache it)."""

    task: asyncio.Task[_Entry | None] | None = None
    stale: bool = False


@dataclass(slots=True)
class _Stats:
    hits: int = 0
    misses: int = 0
    stale_served: int = 0
    feed_errors: int = 0


def _invalid() -> AuthenticationError:
    return AuthenticationError("Incorrect API key provided.", code="invalid_api_key")


class KeyDirectory:
    """Authenticates virtual keys against ``store`` through a short-lived cache.

    Args:
        store: where keys and tenants live.
        pepper: the HMAC key of the stored secret hashes.
        ttl_s: how long an entry is trusted while the store cannot push changes.
        clock: the gateway's clock (``monotonic`` for the cache, ``time`` for expiry dates).
        pushed_ttl_s: how long an entry is trusted while the change feed is connected.
        negative_limit: most unknown ids remembered at once (the oldest are forgotten first),
            so that probing with random ids cannot grow memory without bound.
    """

    def __init__(
        self,
        store: KeyStore,
        pepper: bytes,
        *,
        ttl_s: float,
        clock: Clock,
        pushed_ttl_s: float = 60.0,
        negative_limit: int = 10_000,
    ) -> None:
        self._store = store
        self._pepper = pepper
        self._ttl_s = ttl_s
        self._pushed_ttl_s = pushed_ttl_s
        self._clock = clock
        self._negative_limit = negative_limit
        self._entries: dict[str, _Entry] = {}
        self._unknown: dict[str, float] = {}  # id -> monotonic time it was found unknown
        self._by_tenant: dict[str, set[str]] = {}
        self._loads: dict[str, _Load] = {}
        self._pushed = False
        self.stats = _Stats()

    @property
    def pushed(self) -> bool:
        """Whether the store's change feed is connected (entries live ``pushed_ttl_s``)."""
        return self._pushed

    @property
    def ttl_s(self) -> float:
        """How long entries are trusted right now."""
        return self._pushed_ttl_s if self._pushed else self._ttl_s

    # -- the hot path --------------------------------------------------------------------------

    async def authenticate(self, presented: str) -> Principal:
        """The caller presenting virtual key ``presented``.

        Raises:
            AuthenticationError: malformed, unknown or wrong secret (``invalid_api_key``),
                revoked (``key_revoked``), blocked (``key_blocked``), expired (``key_expired``).
            PermissionDeniedError: the key's tenant is blocked (``tenant_blocked``), expired
                (``tenant_expired``) or missing (``tenant_unknown``).
            ServiceUnavailableError: the store is unreachable and nothing is cached (503).
        """
        parsed = parse_key(presented)
        if parsed is None:
            raise _invalid()
        key_id, secret = parsed
        now = self._clock.monotonic()
        ttl = self._pushed_ttl_s if self._pushed else self._ttl_s
        entry = self._entries.get(key_id)
        if entry is not None and now - entry.fetched_at < ttl:
            self.stats.hits += 1
        else:
            if entry is None:
                seen = self._unknown.get(key_id)
                if seen is not None and now - seen < ttl:
                    raise _invalid()
            self.stats.misses += 1
            entry = await self._refresh(key_id, entry)
            if entry is None:
                raise _invalid()
        return self._admit(entry, secret)

    def _admit(self, entry: _Entry, secret: str) -> Principal:
        key = entry.key
        # The secret first: whoever lacks it learns nothing about the key's state.
        if not secret_matches(secret, key.secret_hash, self._pepper):
            raise _invalid()
        if key.revoked_at is not None:
            raise AuthenticationError("This API key has been revoked.", code="key_revoked")
        if key.blocked:
            raise AuthenticationError("This API key is blocked.", code="key_blocked")
        now = self._clock.time()
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationError("This API key has expired.", code="key_expired")
        if key.tenant is not None:
            tenant = entry.tenant
            if tenant is None:
                raise PermissionDeniedError(
                    f"The key's tenant `{key.tenant}` does not exist.", code="tenant_unknown"
                )
            if tenant.blocked:
                raise PermissionDeniedError(
                    f"The tenant `{tenant.name}` is blocked.", code="tenant_blocked"
                )
            if tenant.expires_at is not None and tenant.expires_at <= now:
                raise PermissionDeniedError(
                    f"The tenant `{tenant.name}` has expired.", code="tenant_expired"
                )
        return entry.principal

    # -- misses --------------------------------------------------------------------------------

    async def _refresh(self, key_id: str, stale: _Entry | None) -> _Entry | None:
        load = self._loads.get(key_id)
        if load is None:
            load = self._loads[key_id] = _Load()
            task = asyncio.get_running_loop().create_task(self._load(key_id, load))
            load.task = task
            task.add_done_callback(lambda done: self._forget_load(key_id, load, done))
        assert load.task is not None
        try:
            # Shielded: a caller that gives up must not cancel the read the others wait on.
            return await asyncio.shield(load.task)
        except KeyStoreUnavailableError as exc:
            if stale is None:
                raise ServiceUnavailableError(
                    "The key store is unavailable.", code="key_store_unavailable"
                ) from exc
            # Trusted for another ttl_s, so that an outage costs one store attempt per key per
            # ttl_s rather than one per request.
            stale.fetched_at = self._clock.monotonic()
            self.stats.stale_served += 1
            log.warning("key store unavailable; serving key %s from cache: %s", key_id, exc)
            return stale

    def _forget_load(self, key_id: str, load: _Load, done: asyncio.Task[_Entry | None]) -> None:
        if self._loads.get(key_id) is load:
            del self._loads[key_id]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone, which is no error

    async def _load(self, key_id: str, load: _Load) -> _Entry | None:
        started = self._clock.monotonic()
        key = await self._store.get_key(key_id)
        if key is None:
            if not load.stale:
                self._remember_unknown(key_id, started)
            return None
        tenant = await self._store.get_tenant(key.tenant) if key.tenant is not None else None
        entry = _Entry(key, tenant, principal_for(key, tenant), started)
        if not load.stale:
            self._put(entry)
        return entry

    def _put(self, entry: _Entry) -> None:
        key_id = entry.key.id
        self._unknown.pop(key_id, None)
        old = self._entries.get(key_id)
        if old is not None:
            self._untrack(old)
        self._entries[key_id] = entry
        if entry.key.tenant is not None:
            self._by_tenant.setdefault(entry.key.tenant, set()).add(key_id)

    def _untrack(self, entry: _Entry) -> None:
        if entry.key.tenant is not None:
            ids = self._by_tenant.get(entry.key.tenant)
            if ids is not None:
                ids.discard(entry.key.id)
                if not ids:
                    del self._by_tenant[entry.key.tenant]

    def _remember_unknown(self, key_id: str, at: float) -> None:
        unknown = self._unknown
        unknown.pop(key_id, None)
        while len(unknown) >= self._negative_limit:
            del unknown[next(iter(unknown))]  # insertion order: the oldest first
        unknown[key_id] = at

    # -- invalidation --------------------------------------------------------------------------

    def invalidate(self, change: Change) -> None:
        """Drop what ``change`` concerns: a key; every cached key of a tenant; or everything."""
        if change.kind == "key":
            entry = self._entries.pop(change.id, None)
            if entry is not None:
                self._untrack(entry)
            self._unknown.pop(change.id, None)
            if (load := self._loads.get(change.id)) is not None:
                load.stale = True
            return
        if change.kind == "tenant":
            for key_id in self._by_tenant.pop(change.id, set()):
                self._entries.pop(key_id, None)
        else:
            self._entries.clear()
            self._by_tenant.clear()
            self._unknown.clear()
        # A read in flight may return the tenant's old record (its key is not known yet).
        for load in self._loads.values():
            load.stale = True

    async def run(self) -> None:
        """Consume the store's change feed until cancelled: drop each changed record; while
        the feed is down, trust entries for ``ttl_s`` only and resubscribe with bounded
        backoff. Returns at once when the store has no feed, and when the feed ends (the store
        was closed)."""
        backoff = _BACKOFF_FIRST_S
        while True:
            feed = self._store.changes()
            if feed is None:
                return
            try:
                async for change in feed:
                    if change.kind == "all":
                        self._pushed = True  # subscribed: every later change reaches us
                        backoff = _BACKOFF_FIRST_S
                    self.invalidate(change)
                return
            except KeyStoreUnavailableError as exc:
                self.stats.feed_errors += 1
                log.warning("key store change feed lost (%s); retrying in %.2fs", exc, backoff)
            except Exception:
                self.stats.feed_errors += 1
                log.exception("key store change feed failed; retrying in %.2fs", backoff)
            finally:
                self._pushed = False
                with anyio.CancelScope(shield=True):
                    await close_chunks(feed)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)
