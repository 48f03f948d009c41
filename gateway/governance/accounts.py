"""A virtual key's account: its key and tenant records, turned into the limiter's rules.

Built once per cached key (not per request): :class:`KeyAccount` memoizes the rules of each
model group, and :func:`principal_for` makes the :class:`~gateway.identity.Principal` that
authentication hands the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.governance.limiter import Rule
from gateway.governance.records import KeyRecord, Limits, TenantRecord
from gateway.identity import Principal


def _rules(scope: str, limits: Limits) -> list[Rule]:
    rules: list[Rule] = []
    if limits.rpm is not None:
        rules.append(Rule(scope, "requests", limits.rpm))
    if limits.tpm is not None:
        rules.append(Rule(scope, "tokens", limits.tpm))
    if limits.max_parallel is not None:
        rules.append(Rule(scope, "parallel", limits.max_parallel))
    rules.extend(
        Rule(scope, "budget", b.nanos, b.window, tuple(b.alert_thresholds)) for b in limits.budgets
    )
    return rules


@dataclass(slots=True)
class KeyAccount:
    """A live key, its tenant, and the rules that apply to each model group.

    Attributes:
        key: the key's record.
        tenant: its tenant's record (None: a key of its own).
        tag: the hash tag of every limiter key it touches: its tenant's name, else its own id,
            so that one request's counters share a Redis Cluster slot.
        rate_headers: the ``x-ratelimit-*`` headers of its latest reservation, sent with the
            answers that reserve nothing (cache hits), so every answer carries them.
    """

    key: KeyRecord
    tenant: TenantRecord | None
    tag: str = ""
    rate_headers: dict[str, str] | None = None
    _by_group: dict[str, tuple[Rule, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tag = f"t:{self.tenant.name}" if self.tenant else f"k:{self.key.id}"

    @property
    def key_scope(self) -> str:
        return f"key:{self.key.id}"

    @property
    def budget_scopes(self) -> tuple[str, ...]:
        """The scopes that carry budgets, most specific first."""
        scopes = [self.key_scope] if self.key.budgets else []
        if self.tenant is not None and self.tenant.budgets:
            scopes.append(f"tenant:{self.tenant.name}")
        return tuple(scopes)

    def rules_for(self, group: str) -> tuple[Rule, ...]:
        """Every rule a request to model group ``group`` is subject to: the key's, the key's for
        that group, the tenant's, the tenant's for that group (empty: nothing to reserve)."""
        rules = self._by_group.get(group)
        if rules is None:
            key = self.key
            found = _rules(self.key_scope, key.limits)
            if (override := key.model_limits.get(group)) is not None:
                found += _rules(f"{self.key_scope}|model:{group}", override)
            if (tenant := self.tenant) is not None:
                found += _rules(f"tenant:{tenant.name}", tenant.limits)
                if (override := tenant.model_limits.get(group)) is not None:
                    found += _rules(f"tenant:{tenant.name}|model:{group}", override)
            rules = self._by_group[group] = tuple(found)
        return rules

    def cost_policy(self) -> str | None:
        """The key's cost policy, else its tenant's (a group's applies when neither has one)."""
        if self.key.cost_policy:
            return self.key.cost_policy
        return self.tenant.cost_policy if self.tenant else None


def allowed_models(key: KeyRecord, tenant: TenantRecord | None) -> frozenset[str] | None:
    """The model groups a key may use: its own list, narrowed by its tenant's (None: all)."""
    mine = frozenset(key.models) if key.models is not None else None
    theirs = frozenset(tenant.models) if tenant is not None and tenant.models is not None else None
    if mine is None:
        return theirs
    return mine if theirs is None else mine & theirs


def principal_for(key: KeyRecord, tenant: TenantRecord | None) -> Principal:
    """The caller presenting a live ``key``."""
    account = KeyAccount(key, tenant)
    scopes = (account.key_scope,) + ((f"tenant:{tenant.name}",) if tenant else ())
    return Principal(
        key_id=key.id,
        tenant=tenant.name if tenant else key.tenant,
        allowed_models=allowed_models(key, tenant),
        limit_scopes=scopes,
        budget_scopes=account.budget_scopes,
        priority=key.priority or (tenant.priority if tenant else 0),
        metadata={**(tenant.metadata if tenant else {}), **key.metadata},
        admin=False,
        account=account,
    )
