"""What :meth:`~gateway.governance.limiter.Limiter.budget_used` answers: the last seen fraction
of each budget, per scope (no I/O; cost policies read it on the request path)."""

from __future__ import annotations

from gateway.governance.limiter import Rule


class BudgetUsage:
    """``(spent + held) / limit`` of each budget rule, as last seen, grouped by scope."""

    __slots__ = ("_by_scope",)

    def __init__(self) -> None:
        self._by_scope: dict[str, dict[str, float]] = {}

    def record(self, rule: Rule, used: int) -> None:
        """Remember that ``rule``'s current window has ``used`` (spent plus held)."""
        self._by_scope.setdefault(rule.scope, {})[rule.name] = used / rule.limit

    def get(self, scope: str) -> float | None:
        """The highest fraction among ``scope``'s budgets, or None when none was seen."""
        fractions = self._by_scope.get(scope)
        return max(fractions.values()) if fractions else None
