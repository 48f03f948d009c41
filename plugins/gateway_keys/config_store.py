"""The ``config`` key store: tenants and keys declared in the YAML file, read-only.

Options::

    tenants: [{name: acme, models: [llama], rpm: 6000, budgets: [{usd: 500, window: month}]}]
    keys:
      - {key: "${ACME_KEY}", tenant: acme, name: ci, rpm: 600}      # a full sk-gw-... key
      - {id: abcdefghijkl, secret_hash: "<hex>", tenant: acme}      # or only its hash

A declared full key is parsed (its id is taken from it) and hashed with the pepper at load,
so the secret itself is kept nowhere. Changes mean editing the file and reloading, so writes
raise :class:`ReadOnlyStoreError` and there is no change feed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import msgspec

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.governance.keystore import Change, ReadOnlyStoreError
from gateway.governance.records import (
    KeyRecord,
    TenantRecord,
    hash_secret,
    parse_key,
)

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^[a-z0-9]{12}$")
_AT_RE = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.DOTALL)
_READ_ONLY = "the `config` key store is read-only: edit the config file and reload"


def _problem(where: str, exc: msgspec.ValidationError) -> ValueError:
    """``keys[2].rpm: Expected `int`, got `str```, from msgspec's ``... - at `$.rpm```."""
    match = _AT_RE.match(str(exc))
    message, path = (match.group(1), match.group(2) or "") if match else (str(exc), "")
    return ValueError(f"{where}{path}: {message}")


def _entries(value: object, name: str) -> Sequence[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise TypeError(f"`{name}` must be a list, got {type(value).__name__}")
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise ValueError(f"{name}[{i}]: must be a mapping, got {type(entry).__name__}")
    return value


def _key_record(i: int, entry: Mapping[str, Any], pepper: bytes) -> KeyRecord:
    fields = dict(entry)
    where = f"keys[{i}]"
    full = fields.pop("key", None)
    if full is not None:
        if "secret_hash" in fields:
            raise ValueError(f"{where}: give `key` or `secret_hash`, not both")
        parsed = parse_key(full) if isinstance(full, str) else None
        if parsed is None:
            raise ValueError(f"{where}.key: not a virtual key (sk-gw-<12 characters>-<secret>)")
        key_id, secret = parsed
        if fields.setdefault("id", key_id) != key_id:
            raise ValueError(f"{where}.id: `{fields['id']}` is not the id of its key `{key_id}`")
        fields["secret_hash"] = hash_secret(secret, pepper)
    elif "secret_hash" in fields:
        secret_hash = fields["secret_hash"]
        if not isinstance(secret_hash, str) or not _HASH_RE.match(secret_hash):
            raise ValueError(f"{where}.secret_hash: must be 64 lowercase hex digits")
        if "id" not in fields:
            raise ValueError(f"{where}.id: required with `secret_hash`")
    else:
        raise ValueError(f"{where}.key: required (a full key, or `id` and `secret_hash`)")
    if not isinstance(fields["id"], str) or not _ID_RE.match(fields["id"]):
        raise ValueError(f"{where}.id: must be 12 characters of [a-z0-9]")
    try:
        return msgspec.convert(fields, KeyRecord)
    except msgspec.ValidationError as exc:
        raise _problem(where, exc) from None


class ConfigKeyStore:
    """Tenants and keys from the config file (see the module docstring).

    Args:
        tenants: tenant mappings (:class:`TenantRecord` fields).
        keys: key mappings (:class:`KeyRecord` fields, with ``key`` or ``secret_hash``).
        clock: the gateway's clock (unused).
        pepper: hashes the declared full keys' secrets.

    Raises:
        TypeError, ValueError: a bad entry, named (``keys[2].key: ...``); a duplicate id or
            name; a key of an undeclared tenant.
    """

    def __init__(
        self,
        tenants: Sequence[Mapping[str, Any]] | None = None,
        keys: Sequence[Mapping[str, Any]] | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        pepper: bytes = b"",
    ) -> None:
        if not isinstance(pepper, bytes) or not pepper:
            raise TypeError("the `config` key store needs the pepper (bytes)")
        self._tenants: dict[str, TenantRecord] = {}
        for i, entry in enumerate(_entries(tenants, "tenants")):
            try:
                tenant = msgspec.convert(dict(entry), TenantRecord)
            except msgspec.ValidationError as exc:
                raise _problem(f"tenants[{i}]", exc) from None
            if tenant.name in self._tenants:
                raise ValueError(f"tenants[{i}].name: `{tenant.name}` is declared twice")
            self._tenants[tenant.name] = tenant
        self._keys: dict[str, KeyRecord] = {}
        for i, entry in enumerate(_entries(keys, "keys")):
            record = _key_record(i, entry, pepper)
            if record.id in self._keys:
                raise ValueError(f"keys[{i}].id: `{record.id}` is declared twice")
            if record.tenant is not None and record.tenant not in self._tenants:
                raise ValueError(f"keys[{i}].tenant: `{record.tenant}` is not a declared tenant")
            self._keys[record.id] = record

    @property
    def writable(self) -> bool:
        return False

    async def get_key(self, key_id: str) -> KeyRecord | None:
        return self._keys.get(key_id)

    async def get_tenant(self, name: str) -> TenantRecord | None:
        return self._tenants.get(name)

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        found = [k for k in self._keys.values() if tenant is None or k.tenant == tenant]
        return sorted(found, key=lambda r: (r.created_at, r.id))

    async def list_tenants(self) -> list[TenantRecord]:
        return sorted(self._tenants.values(), key=lambda r: r.name)

    async def put_key(self, record: KeyRecord, *, create: bool) -> None:
        raise ReadOnlyStoreError(_READ_ONLY)

    async def put_tenant(self, record: TenantRecord, *, create: bool) -> None:
        raise ReadOnlyStoreError(_READ_ONLY)

    async def delete_tenant(self, name: str) -> None:
        raise ReadOnlyStoreError(_READ_ONLY)

    def changes(self) -> AsyncIterator[Change] | None:
        return None

    async def aclose(self) -> None:
        return None
