"""Virtual keys and tenants as stored: the records every key store keeps, and the key format.

A virtual key reads ``sk-gw-<public id>-<secret>``. Only ``HMAC-SHA-256(pepper, secret)`` is
stored (hex, in :attr:`KeyRecord.secret_hash`); the store is looked up by the public id and the
digest compared in constant time, so neither a leaked store nor a timing probe yields a key. The
pepper is a server-side secret from the environment (``GATEWAY_KEY_PEPPER``), never stored
beside the hashes.

Money is held in integer nano-dollars (``1 USD = 10**9``) everywhere below the admin API, so
that sums are exact in Python and in Redis's Lua alike; the API speaks US dollars.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Annotated, Literal

import msgspec

KEY_PREFIX = "sk-gw-"
NANOS_PER_USD = 1_000_000_000
PEPPER_ENV = "GATEWAY_KEY_PEPPER"

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_ID_LENGTH = 12
_KEY_RE = re.compile(r"^sk-gw-([a-z0-9]{12})-([A-Za-z0-9_-]{32,128})$")
_DURATION_RE = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CALENDAR_WINDOWS = ("day", "week", "month")

Role = Literal["user", "admin"]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]


def window_seconds(window: str) -> int | None:
    """The length of a duration window (``6h`` → 21600); None for a calendar window.

    Raises:
        ValueError: ``window`` is neither ``day``/``week``/``month`` nor ``<n>s|m|h|d``.
    """
    if window in CALENDAR_WINDOWS:
        return None
    match = _DURATION_RE.match(window)
    if match is None:
        raise ValueError(
            f"invalid budget window `{window}`: use day, week, month or a duration like 6h"
        )
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


class Budget(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A spending cap over a window.

    Attributes:
        usd: the most that may be spent in one window, in US dollars.
        window: ``day``, ``week`` (Monday 00:00 UTC), ``month`` (calendar, UTC), or a duration
            (``30m``, ``6h``, ``7d``) measured in fixed windows from the Unix epoch.
        alert_thresholds: fractions of ``usd`` at which an alert fires, once per window each.
    """

    usd: Annotated[float, msgspec.Meta(gt=0)]
    window: str = "month"
    alert_thresholds: tuple[float, ...] = (0.8, 0.9, 1.0)

    @property
    def nanos(self) -> int:
        """The cap in nano-dollars."""
        return round(self.usd * NANOS_PER_USD)

    def __post_init__(self) -> None:
        window_seconds(self.window)  # raises ValueError on a bad window
        for t in self.alert_thresholds:
            if not 0 < t <= 1:
                raise ValueError(f"alert threshold {t} must be in (0, 1]")


class Limits(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Rate, concurrency and spend limits; each is off when unset.

    Attributes:
        rpm: requests per minute (GCRA: a full minute's worth may burst, then one per
            ``60/rpm`` seconds).
        tpm: tokens per minute (prompt plus completion), reserved before dispatch and
            reconciled after; an overage is debt the next requests wait out.
        max_parallel: requests in flight at once.
        budgets: spending caps, each over its own window.
    """

    rpm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    tpm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_parallel: Annotated[int, msgspec.Meta(ge=1)] | None = None
    budgets: tuple[Budget, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether no limit is set."""
        return (
            self.rpm is None and self.tpm is None and self.max_parallel is None and not self.budgets
        )


class _Holder(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """What keys and tenants both carry."""

    models: list[str] | None = None
    """Model groups (or aliases) allowed; None: every one (a key is also capped by its tenant)."""
    rpm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    tpm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_parallel: Annotated[int, msgspec.Meta(ge=1)] | None = None
    budgets: list[Budget] = msgspec.field(default_factory=list)
    model_limits: dict[str, Limits] = msgspec.field(default_factory=dict)
    """Per model group (public name) limits, applied on top of the holder's own."""
    priority: int = 0
    """The default scheduling priority of the holder's requests (higher first)."""
    max_priority: int | None = None
    """The highest priority a request may ask for (``priority`` field or header); None: its
    default priority is also its highest."""
    weight: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """Its fair-share weight (``fair_share``: service is divided by it)."""
    queue_timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """How long its requests may wait in a saturated group's queue (None: the group's)."""
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    expires_at: float | None = None
    """Unix time after which the holder is refused (401 for a key, 403 for a tenant's keys)."""
    blocked: bool = False
    cost_policy: str | None = None
    """A cost policy's name (``governance.cost_policies``) applied to the holder's requests."""
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def limits(self) -> Limits:
        """The holder's own limits (without per-model overrides)."""
        return Limits(self.rpm, self.tpm, self.max_parallel, tuple(self.budgets))


class TenantRecord(_Holder, kw_only=True):
    """A team or customer; its limits cap all its keys together."""

    name: Name


class KeyRecord(_Holder, kw_only=True):
    """A virtual key, as stored (never the secret).

    Attributes:
        id: the public id (the ``<public id>`` of ``sk-gw-<public id>-<secret>``).
        secret_hash: hex ``HMAC-SHA-256(pepper, secret)``.
        tenant: the tenant it belongs to (None: a key of its own).
        name: a human label.
        role: ``user`` calls models; ``admin`` may also manage its tenant's keys and read its
            spend through ``/admin``.
        revoked_at: Unix time it was revoked (None: live). Revoked keys are kept, refused.
    """

    id: str
    secret_hash: str
    tenant: str | None = None
    name: str | None = None
    role: Role = "user"
    revoked_at: float | None = None


def new_key() -> tuple[str, str, str]:
    """A fresh virtual key: ``(public id, secret, full key)``."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
    secret = secrets.token_urlsafe(32)  # 43 characters of [A-Za-z0-9_-]
    return key_id, secret, f"{KEY_PREFIX}{key_id}-{secret}"


def parse_key(presented: str) -> tuple[str, str] | None:
    """``(public id, secret)`` of a well-formed virtual key, else None."""
    match = _KEY_RE.match(presented)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str, pepper: bytes) -> str:
    """The stored form of ``secret``: hex HMAC-SHA-256 keyed by the server's pepper."""
    return hmac.digest(pepper, secret.encode(), "sha256").hex()


def secret_matches(secret: str, stored_hash: str, pepper: bytes) -> bool:
    """Whether ``secret`` hashes to ``stored_hash`` (constant-time comparison)."""
    return hmac.compare_digest(hash_secret(secret, pepper), stored_hash)
