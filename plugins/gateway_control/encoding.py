"""What the control stores keep, as JSON: a config version's record, health hints, job state;
and the option checks both stores share."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from gateway.control.base import ConfigVersion, HealthHint
from gateway.errors import ServiceUnavailableError

T = TypeVar("T")


class VersionRecord(msgspec.Struct, frozen=True):
    """A published version less its number, which the store keeps beside it (a hash field, a
    file name): the number is only known inside the atomic step that assigns it."""

    text: str
    source: str
    published_at: float
    digest: str

    def at(self, version: int) -> ConfigVersion:
        """This record as version ``version``."""
        return ConfigVersion(version, self.text, self.source, self.published_at, self.digest)


def digest_of(text: str) -> str:
    """SHA-256 of ``text`` (UTF-8), hex: what replicas compare to know what they run."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_keep_versions(keep_versions: object) -> int:
    """``keep_versions`` validated: how many versions a store keeps (at least 1).

    Raises:
        ValueError: not a positive integer.
    """
    if isinstance(keep_versions, bool) or not isinstance(keep_versions, int) or keep_versions < 1:
        raise ValueError(f"`keep_versions` must be a positive integer, got {keep_versions!r}")
    return keep_versions


_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(VersionRecord).decode
_decode_hints = msgspec.json.Decoder(list[HealthHint]).decode
_decode_state = msgspec.json.Decoder(dict[str, Any]).decode


def encode_record(record: VersionRecord) -> bytes:
    return _encode(record)


def decode_record(raw: bytes | str) -> VersionRecord:
    """Raises ServiceUnavailableError: the store holds something else (corrupt)."""
    return _decoded(_decode_record, raw, "a config version")


def encode_hints(hints: Sequence[HealthHint]) -> bytes:
    return _encode(list(hints))


def decode_hints(raw: bytes | str) -> list[HealthHint]:
    """Raises ServiceUnavailableError: the store holds something else (corrupt)."""
    return _decoded(_decode_hints, raw, "the health hints")


def encode_state(state: Mapping[str, Any]) -> bytes:
    """Raises TypeError: a value is not JSON-able."""
    try:
        return _encode(dict(state))
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"a job's state must be JSON-able: {exc}") from None


def decode_state(raw: bytes | str) -> dict[str, Any]:
    """Raises ServiceUnavailableError: the store holds something else (corrupt)."""
    return _decoded(_decode_state, raw, "a job's state")


def _decoded(decode: Callable[[bytes | str], T], raw: bytes | str, what: str) -> T:
    try:
        return decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ServiceUnavailableError(
            f"the control store holds corrupt data ({what}): {exc}"
        ) from exc
