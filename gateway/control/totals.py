"""Which ledger totals a usage record adds to, and how much: the arithmetic every usage ledger
(``sqlite``, ``dynamodb``) shares, so that they all keep the same totals.

A record counts towards its tenant (``tenant:<name>``), its key (``key:<id>``) and its model
group (``model:<group>``), each for the UTC day and the UTC month in which the request started
(``started_at``, as the usage sinks' spend reports and the limiter's budget windows have it).
An anonymous request has no key or tenant scope; a record without a model group (a request
refused before one was resolved) none either. Every record is one request, an agent's run and
its steps included (the run's own record carries no tokens or money, so nothing is counted
twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.governance.sinks import UsageRecord

LedgerKey = tuple[str, str]
"""``(scope, period)``: ``("tenant:acme", "2026-12-01")``, ``("model:chat", "2026-12")``."""


@dataclass(frozen=True, slots=True)
class Increment:
    """What some records add to one total."""

    cost_nanos: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    def plus(self, rec: UsageRecord) -> Increment:
        """This increment with ``rec`` added."""
        return Increment(
            self.cost_nanos + rec.cost_nanos,
            self.prompt_tokens + rec.prompt_tokens,
            self.completion_tokens + rec.completion_tokens,
            self.requests + 1,
        )


def day_of(at: float) -> str:
    """The UTC day of Unix time ``at``: ``2026-12-01``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def month_of(at: float) -> str:
    """The UTC month of Unix time ``at``: ``2026-12``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m")


def scopes_of(rec: UsageRecord) -> list[str]:
    """The scopes ``rec`` counts towards: its tenant, key and model group, where it has them."""
    scopes = [f"tenant:{rec.tenant}"] if rec.tenant else []
    if rec.key_id:
        scopes.append(f"key:{rec.key_id}")
    if rec.model:
        scopes.append(f"model:{rec.model}")
    return scopes


def ledger_keys(rec: UsageRecord) -> list[LedgerKey]:
    """Every ``(scope, period)`` total ``rec`` adds to (each scope's day and month)."""
    periods = (day_of(rec.started_at), month_of(rec.started_at))
    return [(scope, period) for scope in scopes_of(rec) for period in periods]


def increments(records: Iterable[UsageRecord]) -> dict[LedgerKey, Increment]:
    """What ``records`` add to each total, summed (exact integers), in first-seen order."""
    out: dict[LedgerKey, Increment] = {}
    for rec in records:
        for key in ledger_keys(rec):
            out[key] = out.get(key, Increment()).plus(rec)
    return out
