"""The degraded (``fail_open``) mode of the ``redis`` limiter: a local share of every limit.

While Redis is unreachable each replica enforces ``max(1, limit // replicas)`` of every rule in
its own :class:`~gateway_limits.memory.MemoryLimiter`, ``replicas`` being the fleet size last
seen through heartbeats: never the full limit, which a fleet would multiply. A local
reservation settles locally; what it really used is then charged to Redis once Redis is back
(the limiter queues the charge), so money and tokens are never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gateway.clock import Clock
from gateway.governance.limiter import Demand, Grant, Reservation, Rule, RuleState
from gateway_limits.memory import MemoryLimiter


def share(rule: Rule, replicas: int) -> Rule:
    """``rule`` with this replica's share of its limit."""
    return replace(rule, limit=max(1, rule.limit // max(1, replicas)))


class LocalShare:
    """Local reservations against each rule's share (alerts stay with Redis: none here)."""

    def __init__(self, clock: Clock) -> None:
        self._limiter = MemoryLimiter(clock=clock)
        self._scaled: dict[str, Demand] = {}

    def reserve(self, demand: Demand, replicas: int) -> Grant:
        """Reserve the share; the grant speaks of ``demand``'s own rules."""
        scaled = replace(demand, rules=tuple(share(r, replicas) for r in demand.rules))
        grant = self._limiter.reserve_now(scaled)
        states = _originals(grant.states, demand.rules)
        denied = None
        if grant.denied is not None:
            denied = demand.rules[scaled.rules.index(grant.denied)]
        if grant.reservation is None:
            return Grant(None, states, denied, grant.retry_after_s)
        # settle needs the shares reserved against, whatever the fleet size is by then
        self._scaled[demand.request_id] = scaled
        reservation = Reservation(demand, grant.reservation.tokens, grant.reservation.windows, True)
        return Grant(reservation, states)

    def settle(self, reservation: Reservation, tokens: int, cost: int) -> None:
        """Settle a local reservation locally (raises on a bug; the caller logs)."""
        scaled = self._scaled.pop(reservation.demand.request_id, None)
        if scaled is not None:
            self._limiter.settle_now(replace(reservation, demand=scaled), tokens, cost)

    def states(self, rules: Sequence[Rule], tag: str, replicas: int) -> list[RuleState]:
        """The local shares' states, speaking of ``rules``."""
        scaled = [share(r, replicas) for r in rules]
        return list(_originals(self._limiter.states_now(scaled, tag), tuple(rules)))

    def sweep(self) -> None:
        self._limiter.sweep()


def _originals(states: Sequence[RuleState], rules: tuple[Rule, ...]) -> tuple[RuleState, ...]:
    return tuple(replace(s, rule=r) for s, r in zip(states, rules, strict=True))
