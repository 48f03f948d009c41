"""Who is calling: the :class:`Principal` that authentication returns for every request.

Everything that depends on the caller reads it from here and nowhere else: the cache namespace,
the admin check, metrics labels, and (next) limits, budgets, priorities and agent tool contexts.
No other module parses ``Authorization``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.governance.accounts import KeyAccount

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request.

    Attributes:
        key_id: a stable, non-secret id of the API key (never the key); None when anonymous.
        tenant: the team or customer the key belongs to; None for none.
        allowed_models: the model groups (or aliases) the key may use; None means all.
        limit_scopes: the identities whose rate and concurrency counters this request
            charges, most specific first (``key:<id>``, ``tenant:<name>``).
        budget_scopes: the identities whose spend budgets this request charges.
        priority: the default scheduling priority of the caller's requests (higher first).
        metadata: free-form labels from the key's definition.
        admin: whether the key is the master key (the whole admin API).
        account: a virtual key's account (records and limiter rules); None for static keys
            and anonymous callers, whose requests nothing limits.
    """

    key_id: str | None
    tenant: str | None = None
    allowed_models: frozenset[str] | None = None
    limit_scopes: tuple[str, ...] = ()
    budget_scopes: tuple[str, ...] = ()
    priority: int = 0
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    admin: bool = False
    account: KeyAccount | None = None

    @property
    def tenant_admin(self) -> str | None:
        """The tenant whose keys and spend this caller may manage (a tenant admin key)."""
        account = self.account
        if account is not None and account.key.role == "admin" and account.tenant is not None:
            return account.tenant.name
        return None

    @property
    def anonymous(self) -> bool:
        """Whether authentication is off (no key was asked for)."""
        return self.key_id is None

    @property
    def namespace(self) -> str:
        """Where this caller's cached answers and stored objects live: one per key, so that
        tenants never share them; ``public`` when authentication is off."""
        return "public" if self.key_id is None else f"k{self.key_id}"

    def may_use(self, model: str) -> bool:
        """Whether the caller may call model group (or alias) ``model``."""
        return self.allowed_models is None or model in self.allowed_models


ANONYMOUS = Principal(key_id=None)


def key_id_of(secret: str) -> str:
    """A stable, non-reversible id for a static API key (16 hex digits of its SHA-256)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]
