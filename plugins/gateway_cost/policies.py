"""The cost policies that act before dispatch: ``reject``, ``downgrade``, ``cheapest_capable``.

Each reads only the :class:`~gateway.cost.base.Situation` (no I/O): the budgets' used fractions
there are as this replica last saw them, fresh to within one request on a single process and to
within the requests in flight across a fleet; the limiter's atomic reservation still guarantees
that no budget is overspent, whatever a policy decides.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.cost.base import BaseCostPolicy, Decision, Situation


def _fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"`{name}` must be a fraction between 0 and 1, got {value!r}")
    return float(value)


def _groups(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(g, str) and g for g in value):
        raise ValueError(f"`{name}` must be a list of model group names, got {value!r}")
    return tuple(value)


class RejectPolicy(BaseCostPolicy):
    """Refuse requests once the caller's budgets are ``threshold`` used (default 1.0: the
    limiter refuses there anyway; a lower one keeps headroom for requests in flight).

    Options:
        threshold: the used fraction from which requests are refused.
    """

    def __init__(self, threshold: float = 1.0) -> None:
        self.threshold = _fraction("threshold", threshold)

    def decide(self, situation: Situation) -> Decision | None:
        used = situation.used
        if used >= self.threshold:
            return Decision("reject", reason=f"budget {used:.0%} used (limit {self.threshold:.0%})")
        return None


class DowngradePolicy(BaseCostPolicy):
    """Send requests one step down a chain of model groups for each threshold of budget passed.

    Options:
        chain: model groups from dearest to cheapest, e.g. ``[gpt-4o, gpt-4o-mini, llama]``.
        thresholds: used fractions; passing the i-th moves requests i+1 steps down (default
            ``[0.8]``: one step at 80 %).

    A request for a group outside the chain, or already at its end, proceeds as asked; a step to
    a group the caller may not use is skipped.
    """

    def __init__(self, chain: Sequence[str], thresholds: Sequence[float] = (0.8,)) -> None:
        self.chain = _groups("chain", list(chain) if isinstance(chain, tuple) else chain)
        if len(self.chain) < 2:
            raise ValueError("`chain` needs at least two model groups")
        if not isinstance(thresholds, list | tuple) or not thresholds:
            raise ValueError("`thresholds` must be a non-empty list of fractions")
        self.thresholds = sorted(_fraction("thresholds", t) for t in thresholds)

    def decide(self, situation: Situation) -> Decision | None:
        if situation.group not in self.chain:
            return None
        used = situation.used
        steps = sum(1 for t in self.thresholds if used >= t)
        if steps == 0:
            return None
        start = self.chain.index(situation.group)
        allowed = [g for g in self.chain[start + 1 :] if g in situation.groups]
        if not allowed:
            return None
        target = allowed[min(steps, len(allowed)) - 1]
        return Decision("reroute", group=target, reason=f"downgrade: budget {used:.0%} used")


class CheapestCapablePolicy(BaseCostPolicy):
    """Send each request to the cheapest model group that can serve it: its context window
    holds the prompt plus the output reserved, and it has every capability the request uses.

    Options:
        candidates: the groups to choose from (default: every group the caller may use).
        threshold: apply only once the caller's budgets are this used (default 0: always).
    """

    def __init__(self, candidates: Sequence[str] | None = None, threshold: float = 0.0) -> None:
        self.candidates = None if candidates is None else _groups("candidates", candidates)
        self.threshold = _fraction("threshold", threshold)

    def decide(self, situation: Situation) -> Decision | None:
        if situation.used < self.threshold:
            return None
        names = self.candidates if self.candidates is not None else tuple(situation.groups)
        tokens = situation.prompt_tokens + situation.output_tokens
        best: tuple[float, str] | None = None
        for name in names:
            facts = situation.groups.get(name)
            if facts is None or not facts.fits(tokens, situation.needs):
                continue
            price = facts.price(situation.prompt_tokens, situation.output_tokens)
            if best is None or price < best[0]:
                best = (price, name)
        if best is None or best[1] == situation.group:
            return None
        asked = situation.groups.get(situation.group)
        if (
            asked is not None
            and asked.fits(tokens, situation.needs)
            and asked.price(situation.prompt_tokens, situation.output_tokens) <= best[0]
        ):
            return None
        return Decision("reroute", group=best[1], reason="cheapest_capable")
