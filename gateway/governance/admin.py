"""Managing virtual keys and tenants: the admin API's operations, without HTTP.

Who may do what (``actor`` is the caller's :class:`~gateway.identity.Principal`):

- the master key (``actor.admin``): everything;
- a tenant admin (``actor.tenant_admin``: a live key of role ``admin`` of tenant T): create,
  list, show, update and revoke T's keys of role ``user`` (it cannot make or change admin keys:
  no escalation), and read T itself; nothing of any other tenant;
- anyone else: 403.

Every write validates the whole request first (types, the tenant, model names, budget windows),
then makes one store write, then drops the record from this process's
:class:`~gateway.governance.directory.KeyDirectory` at once (other replicas hear of it through
the store's change feed, or expire it within ``key_cache_ttl_s``) and leaves an
:class:`~gateway.governance.sinks.AuditRecord` with the record before and after. Secret hashes
never leave this module; the full key is returned once, by :meth:`KeyAdmin.create_key`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET

from gateway.clock import Clock
from gateway.errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
    ResourceConflictError,
    ServiceUnavailableError,
)
from gateway.governance.admin_requests import (
    HolderBody,
    KeyCreateBody,
    KeyUpdateBody,
    TenantCreateBody,
    TenantUpdateBody,
    decode_body,
    holder_changes,
)
from gateway.governance.directory import KeyDirectory
from gateway.governance.keystore import (
    Change,
    ConflictError,
    KeyStore,
    KeyStoreError,
    ReadOnlyStoreError,
)
from gateway.governance.records import KeyRecord, TenantRecord, hash_secret, new_key
from gateway.governance.sinks import AuditRecord
from gateway.identity import Principal

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
H = TypeVar("H", KeyRecord, TenantRecord)
Body = bytes | Mapping[str, Any]
Usage = Callable[[KeyRecord, TenantRecord | None], Awaitable[dict[str, Any]]]


def record_dict(record: KeyRecord | TenantRecord) -> dict[str, Any]:
    """Every field of ``record`` (defaults included) as JSON-able values, ``secret_hash`` left
    out: what the API shows and the audit log keeps."""
    fields = {n: getattr(record, n) for n in record.__struct_fields__ if n != "secret_hash"}
    decoded: dict[str, Any] = _decode(_encode(fields))  # plain JSON values (tuples as lists)
    return decoded


def key_status(record: KeyRecord, now: float) -> str:
    """``revoked``, ``blocked``, ``expired`` or ``active``."""
    if record.revoked_at is not None:
        return "revoked"
    if record.blocked:
        return "blocked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"


class KeyAdmin:
    """The operations of ``/admin/keys`` and ``/admin/tenants``.

    Args:
        store: where keys and tenants live.
        directory: this process's key cache, invalidated after each write.
        pepper: hashes new keys' secrets.
        clock: timestamps (``created_at``, ``revoked_at``, audit records).
        audit: receives one record per successful write (must not block or raise).
        known_models: the model groups and aliases served, to check ``models`` against.
        known_policies: the cost policies defined, to check ``cost_policy`` against (None: not
            checked).
        usage: a key's live state for :meth:`show_key` (limiter states, remaining budget);
            None: an empty ``usage``.
    """

    def __init__(
        self,
        store: KeyStore,
        directory: KeyDirectory,
        *,
        pepper: bytes,
        clock: Clock,
        audit: Callable[[AuditRecord], None],
        known_models: Callable[[], Collection[str]],
        known_policies: Callable[[], Collection[str]] | None = None,
        usage: Usage | None = None,
    ) -> None:
        self._store = store
        self._directory = directory
        self._pepper = pepper
        self._clock = clock
        self._audit = audit
        self._known_models = known_models
        self._known_policies = known_policies
        self._usage = usage

    # -- keys ----------------------------------------------------------------------------------

    async def create_key(self, actor: Principal, body: Body) -> dict[str, Any]:
        """A new key; the answer holds the full key (``key``), shown this once."""
        scope = _scope(actor)
        request = decode_body(body, KeyCreateBody)
        tenant = scope if request.tenant is UNSET else request.tenant
        if scope is not None:
            if tenant != scope:
                raise PermissionDeniedError(
                    f"A tenant admin may only create keys of tenant `{scope}`.", param="tenant"
                )
            if request.role == "admin":
                raise PermissionDeniedError(
                    "A tenant admin may only create keys of role `user`.", param="role"
                )
        if tenant is not None and await self._call(self._store.get_tenant(tenant)) is None:
            raise InvalidRequestError(f"No tenant named `{tenant}`.", param="tenant")
        now = self._clock.time()
        key_id, secret, full = new_key()
        base = KeyRecord(
            id=key_id,
            secret_hash=hash_secret(secret, self._pepper),
            tenant=tenant,
            created_at=now,
            updated_at=now,
        )
        record = self._apply(base, request, now)
        await self._call(self._store.put_key(record, create=True))
        self._wrote(actor, "key.create", Change("key", key_id), tenant, None, record)
        return {"id": key_id, "key": full, **self._key_view(record)}

    async def list_keys(self, actor: Principal, tenant: str | None = None) -> dict[str, Any]:
        """Every key (of ``tenant``; a tenant admin's own tenant only)."""
        scope = _scope(actor)
        if scope is not None:
            if tenant not in (None, scope):
                raise PermissionDeniedError(
                    f"A tenant admin may only list keys of tenant `{scope}`.", param="tenant"
                )
            tenant = scope
        records = await self._call(self._store.list_keys(tenant))
        return {"object": "list", "data": [self._key_view(r) for r in records]}

    async def show_key(self, actor: Principal, key_id: str) -> dict[str, Any]:
        """A key and its ``usage`` (limiter states and remaining budget)."""
        record = await self._key(actor, key_id, write=False)
        usage: dict[str, Any] = {}
        if self._usage is not None:
            tenant = None
            if record.tenant is not None:
                tenant = await self._call(self._store.get_tenant(record.tenant))
            usage = await self._usage(record, tenant)
        return {**self._key_view(record), "usage": usage}

    async def update_key(self, actor: Principal, key_id: str, body: Body) -> dict[str, Any]:
        """Change the fields given in ``body`` (``null`` clears one); the others stay."""
        request = decode_body(body, KeyUpdateBody)
        before = await self._key(actor, key_id, write=True)
        if _scope(actor) is not None and request.role == "admin":
            raise PermissionDeniedError(
                "A tenant admin may only manage keys of role `user`.", param="role"
            )
        if before.revoked_at is not None:
            raise ResourceConflictError(f"The key `{key_id}` is revoked; create a new one.")
        after = self._apply(before, request, self._clock.time())
        await self._call(self._store.put_key(after, create=False))
        self._wrote(actor, "key.update", Change("key", key_id), before.tenant, before, after)
        return self._key_view(after)

    async def revoke_key(self, actor: Principal, key_id: str) -> dict[str, Any]:
        """Revoke a key for good (it is kept, and refused from now on); revoking a revoked key
        changes nothing."""
        before = await self._key(actor, key_id, write=True)
        if before.revoked_at is not None:
            return self._key_view(before)
        now = self._clock.time()
        after = msgspec.structs.replace(before, revoked_at=now, updated_at=now)
        await self._call(self._store.put_key(after, create=False))
        self._wrote(actor, "key.revoke", Change("key", key_id), before.tenant, before, after)
        return self._key_view(after)

    # -- tenants -------------------------------------------------------------------------------

    async def create_tenant(self, actor: Principal, body: Body) -> dict[str, Any]:
        """A new tenant (master only)."""
        _master(actor)
        request = decode_body(body, TenantCreateBody)
        now = self._clock.time()
        base = TenantRecord(name=request.name, created_at=now, updated_at=now)
        record = self._apply(base, request, now)
        await self._call(self._store.put_tenant(record, create=True))
        self._wrote(
            actor, "tenant.create", Change("tenant", record.name), record.name, None, record
        )
        return record_dict(record)

    async def list_tenants(self, actor: Principal) -> dict[str, Any]:
        """Every tenant (a tenant admin sees only its own)."""
        scope = _scope(actor)
        if scope is None:
            records = await self._call(self._store.list_tenants())
        else:
            own = await self._call(self._store.get_tenant(scope))
            records = [] if own is None else [own]
        return {"object": "list", "data": [record_dict(r) for r in records]}

    async def show_tenant(self, actor: Principal, name: str) -> dict[str, Any]:
        """One tenant (a tenant admin: only its own)."""
        scope = _scope(actor)
        if scope is not None and name != scope:
            raise PermissionDeniedError(f"A tenant admin may only read tenant `{scope}`.")
        return record_dict(await self._tenant(name))

    async def update_tenant(self, actor: Principal, name: str, body: Body) -> dict[str, Any]:
        """Change the fields given in ``body`` (master only)."""
        _master(actor)
        request = decode_body(body, TenantUpdateBody)
        before = await self._tenant(name)
        after = self._apply(before, request, self._clock.time())
        await self._call(self._store.put_tenant(after, create=False))
        self._wrote(actor, "tenant.update", Change("tenant", name), name, before, after)
        return record_dict(after)

    async def delete_tenant(self, actor: Principal, name: str) -> dict[str, Any]:
        """Remove a tenant that has no keys (master only; 409 while it has some)."""
        _master(actor)
        before = await self._tenant(name)
        await self._call(self._store.delete_tenant(name))
        self._wrote(actor, "tenant.delete", Change("tenant", name), name, before, None)
        return {"name": name, "deleted": True}

    # -- helpers -------------------------------------------------------------------------------

    def _key_view(self, record: KeyRecord) -> dict[str, Any]:
        return {**record_dict(record), "status": key_status(record, self._clock.time())}

    async def _key(self, actor: Principal, key_id: str, *, write: bool) -> KeyRecord:
        scope = _scope(actor)
        record = await self._call(self._store.get_key(key_id))
        if record is None:
            raise NotFoundError(f"No key with id `{key_id}`.", param="id")
        if scope is not None:
            if record.tenant != scope:
                raise PermissionDeniedError(f"A tenant admin may only manage keys of `{scope}`.")
            if write and record.role != "user":
                raise PermissionDeniedError("A tenant admin may only manage keys of role `user`.")
        return record

    async def _tenant(self, name: str) -> TenantRecord:
        record = await self._call(self._store.get_tenant(name))
        if record is None:
            raise NotFoundError(f"No tenant named `{name}`.", param="name")
        return record

    def _apply(self, record: H, request: HolderBody, now: float) -> H:
        """``record`` with the fields ``request`` sets, all validated before anything is
        written (so that nothing is ever half-applied)."""
        changes = holder_changes(request, now, self._known_models, self._known_policies)
        return msgspec.structs.replace(record, **changes, updated_at=now)

    async def _call(self, work: Awaitable[T]) -> T:
        """A store call, with the store's errors as the API's."""
        try:
            return await work
        except ConflictError as exc:
            raise ResourceConflictError(str(exc).capitalize() + ".") from None
        except ReadOnlyStoreError as exc:
            raise MethodNotAllowedError(
                str(exc).capitalize() + ".", code="read_only_store"
            ) from None
        except KeyStoreError as exc:
            raise ServiceUnavailableError(
                f"The key store is unavailable: {exc}", code="key_store_unavailable"
            ) from None
        except KeyError as exc:
            raise NotFoundError(f"No record `{exc.args[0] if exc.args else ''}`.") from None

    def _wrote(
        self,
        actor: Principal,
        action: str,
        change: Change,
        tenant: str | None,
        before: KeyRecord | TenantRecord | None,
        after: KeyRecord | TenantRecord | None,
    ) -> None:
        self._directory.invalidate(change)
        self._audit(
            AuditRecord(
                audit_id=uuid.uuid4().hex,
                at=self._clock.time(),
                actor="master" if actor.admin else f"key:{actor.key_id}",
                action=action,
                target=change.id,
                tenant=tenant,
                before=None if before is None else record_dict(before),
                after=None if after is None else record_dict(after),
            )
        )


def _scope(actor: Principal) -> str | None:
    """None for the master key, the tenant for a tenant admin; 403 for anyone else."""
    if actor.admin:
        return None
    tenant = actor.tenant_admin
    if tenant is None:
        raise PermissionDeniedError(
            "Managing keys needs the master key or a tenant admin key.", code="not_admin"
        )
    return tenant


def _master(actor: Principal) -> None:
    if _scope(actor) is not None:
        raise PermissionDeniedError("Only the master key may manage tenants.", code="not_admin")
