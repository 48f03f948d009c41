"""How the built-in key stores serialize records: msgspec JSON, the same bytes in SQLite and
Redis, so a record moved between them reads back identically."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from gateway.governance.keystore import KeyStoreUnavailableError
from gateway.governance.records import KeyRecord, TenantRecord

R = TypeVar("R", KeyRecord, TenantRecord)

_encode = msgspec.json.Encoder().encode
_key_decoder = msgspec.json.Decoder(KeyRecord)
_tenant_decoder = msgspec.json.Decoder(TenantRecord)


def encode(record: KeyRecord | TenantRecord) -> bytes:
    """The stored form of ``record``."""
    return _encode(record)


def decode_key(data: bytes | str) -> KeyRecord:
    """A stored key record.

    Raises:
        KeyStoreUnavailableError: the bytes are not a key record (a corrupt store).
    """
    try:
        return _key_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise KeyStoreUnavailableError(f"the key store holds a corrupt key: {exc}") from exc


def decode_tenant(data: bytes | str) -> TenantRecord:
    """A stored tenant record (raises as :func:`decode_key`)."""
    try:
        return _tenant_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise KeyStoreUnavailableError(f"the key store holds a corrupt tenant: {exc}") from exc


def key_order(record: KeyRecord) -> tuple[float, str]:
    """The listing order of keys: ``created_at``, then id."""
    return (record.created_at, record.id)
