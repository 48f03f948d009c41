"""The governance parts of a gateway that governs nothing: no usage sinks, no prices, no
limits. Each does nothing, at the cost of an attribute read, so that the request path needs no
``if governance`` branches."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.cost.base import Decision, GroupFacts, Situation, UsageRecord
from gateway.governance.limiter import Demand, Grant, Reservation, Rule, RuleState
from gateway.governance.sinks import UsageRecord as LedgerRecord


class NoLedger:
    """Records nothing."""

    active = False

    def record(self, rec: LedgerRecord) -> None:
        """Drop ``rec``."""


class NoPrices:
    """Prices everything at zero."""

    def worst_case_nanos(self, group: str, prompt_tokens: int, completion_tokens: int) -> int:
        return 0

    def group_facts(self, group: str) -> GroupFacts:
        return GroupFacts(group)

    def cost(self, usage: UsageRecord) -> int | None:
        return 0

    def decide(self, situation: Situation) -> Decision | None:
        return None


class NoLimiter:
    """Admits everything (used when no key has a limit to enforce)."""

    async def reserve(self, demand: Demand) -> Grant:
        reservation = Reservation(demand, demand.tokens)
        return Grant(reservation, tuple(RuleState(r, r.limit, 0.0) for r in demand.rules))

    def settle(self, reservation: Reservation, tokens: int, cost: int) -> None:
        """Nothing was taken."""

    async def states(self, rules: Sequence[Rule], tag: str) -> list[RuleState]:
        return [RuleState(r, r.limit, 0.0) for r in rules]

    def budget_used(self, scope: str) -> float | None:
        return None

    async def start(self) -> None:
        """Nothing to start."""

    async def aclose(self) -> None:
        """Nothing to close."""
