"""The ``memory`` limiter: every limit counted in this process, on the gateway's wall clock.

It implements exactly the algorithms of :mod:`gateway.governance.limiter` (the Redis script is
the same arithmetic in Lua) and is also the degraded local limiter of ``redis``. Everything is
synchronous and in memory, so :meth:`MemoryLimiter.settle` applies the settlement at once (it
never blocks) and :meth:`MemoryLimiter.aclose` has nothing to flush.

Times are floats (Unix seconds, as doubles; Redis's Lua uses the same doubles): the admission
test allows :data:`EPS` of rounding so that a whole minute's burst is never refused by one ulp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.governance.limiter import (
    RATE_PERIOD_S,
    Alert,
    Demand,
    Grant,
    LimiterEvents,
    Reservation,
    Rule,
    RuleState,
)
from gateway_limits.usage import BudgetUsage
from gateway_limits.windows import DAY_S, window_at

log = logging.getLogger(__name__)

EPS = 1e-6
"""Seconds of float rounding tolerated by the GCRA admission test (and counts, when floored)."""
PARALLEL_RETRY_S = 1.0
"""The Retry-After of a full ``parallel`` rule: a slot frees when some request in flight ends,
which nobody can know in advance, so clients are told to try again in a second."""
SWEEP_INTERVAL_S = 60.0


def rate_demand(rule: Rule, tokens: int) -> int:
    """What a request takes of a ``requests`` or ``tokens`` rule (clamped to its limit)."""
    return 1 if rule.kind == "requests" else max(0, min(tokens, rule.limit))


def rate_remaining(rule: Rule, tat: float, now: float) -> int:
    """``floor((60 - (tat - now)) / T)``, within ``[0, limit]``."""
    interval = RATE_PERIOD_S / rule.limit
    ahead = max(tat - now, 0.0)
    return max(0, min(rule.limit, math.floor((RATE_PERIOD_S - ahead) / interval + EPS)))


@dataclass(slots=True)
class _Window:
    """One budget window: settled spend, held reservations, thresholds already alerted."""

    end: float
    spent: int = 0
    held: int = 0
    fired: set[float] = field(default_factory=set)


class MemoryLimiter:
    """Limits of one process (see the module docstring).

    Args:
        clock: its ``time()`` (UTC wall time) drives every limit, so tests use a ManualClock.
        events: where alerts go.
    """

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, events: LimiterEvents | None = None) -> None:
        self._clock = clock
        self._events = events or LimiterEvents()
        self._tat: dict[tuple[str, str], float] = {}
        self._leases: dict[tuple[str, str], dict[str, float]] = {}
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._usage = BudgetUsage()
        self._sweeper: asyncio.Task[None] | None = None

    # -- the contract --------------------------------------------------------------------------

    async def reserve(self, demand: Demand) -> Grant:
        return self.reserve_now(demand)

    def settle(self, reservation: Reservation, tokens: int, cost: int) -> None:
        try:
            self.settle_now(reservation, tokens, cost)
        except Exception:  # settle never raises; a bug here must not fail a finished request
            log.exception("settling request %s failed", reservation.demand.request_id)

    async def states(self, rules: Sequence[Rule], tag: str) -> list[RuleState]:
        return self.states_now(rules, tag)

    def budget_used(self, scope: str) -> float | None:
        return self._usage.get(scope)

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="memory-limiter-sweep")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # -- synchronous core (also used by the redis limiter's degraded mode) ---------------------

    def reserve_now(self, demand: Demand) -> Grant:
        """:meth:`reserve`, synchronously."""
        now = self._clock.time()
        tag = demand.tag
        denied: Rule | None = None
        retry = 0.0
        for rule in demand.rules:
            wait = self._refusal(rule, demand, now)
            if wait is not None:
                denied = denied or rule
                retry = max(retry, wait)
        if denied is not None:
            return Grant(None, tuple(self._state(r, tag, now) for r in demand.rules), denied, retry)
        windows: list[str] = []
        for rule in demand.rules:
            key = (tag, rule.name)
            if rule.kind in ("requests", "tokens"):
                n = rate_demand(rule, demand.tokens)
                tat = self._tat.get(key, now)
                self._tat[key] = max(tat, now) + n * RATE_PERIOD_S / rule.limit
            elif rule.kind == "parallel":
                self._leases.setdefault(key, {})[demand.request_id] = now + demand.lease_s
            else:
                wid, window = self._window(rule, tag, now)
                window.held += demand.cost
                windows.append(wid)
        states = tuple(self._state(r, tag, now) for r in demand.rules)
        return Grant(Reservation(demand, demand.tokens, tuple(windows)), states)

    def settle_now(self, reservation: Reservation, tokens: int, cost: int) -> None:
        """:meth:`settle`, synchronously (it may raise)."""
        now = self._clock.time()
        demand = reservation.demand
        budgets = iter(reservation.windows)
        for rule in demand.rules:
            key = (demand.tag, rule.name)
            if rule.kind == "tokens":
                reserved = rate_demand(rule, reservation.tokens)
                tat = self._tat.get(key, now)
                self._tat[key] = max(tat + (tokens - reserved) * RATE_PERIOD_S / rule.limit, now)
            elif rule.kind == "parallel":
                self._leases.get(key, {}).pop(demand.request_id, None)
            elif rule.kind == "budget":
                wid = next(budgets)
                window = self._windows.get((demand.tag, rule.name, wid))
                if window is None:  # swept or never reserved here: still count the spend
                    window = self._windows[(demand.tag, rule.name, wid)] = _Window(now + DAY_S)
                window.held = max(0, window.held - demand.cost)
                window.spent += cost
                self._usage.record(rule, window.spent + window.held)
                for threshold in sorted(rule.thresholds):
                    if window.spent >= threshold * rule.limit and threshold not in window.fired:
                        window.fired.add(threshold)
                        self._alert(Alert(rule, wid, threshold, window.spent, rule.limit))

    def states_now(self, rules: Sequence[Rule], tag: str) -> list[RuleState]:
        """:meth:`states`, synchronously."""
        now = self._clock.time()
        return [self._state(rule, tag, now) for rule in rules]

    # -- per rule ------------------------------------------------------------------------------

    def _refusal(self, rule: Rule, demand: Demand, now: float) -> float | None:
        """None when ``rule`` admits ``demand`` now, else the seconds until it would."""
        key = (demand.tag, rule.name)
        if rule.kind in ("requests", "tokens"):
            n = rate_demand(rule, demand.tokens)
            ahead = max(self._tat.get(key, now), now) + n * RATE_PERIOD_S / rule.limit - now
            return None if ahead <= RATE_PERIOD_S + EPS else ahead - RATE_PERIOD_S
        if rule.kind == "parallel":
            return None if len(self._live(key, now)) < rule.limit else PARALLEL_RETRY_S
        _, window = self._window(rule, demand.tag, now, create=False)
        if window.spent + window.held + demand.cost <= rule.limit:
            return None
        return window.end - now

    def _state(self, rule: Rule, tag: str, now: float) -> RuleState:
        key = (tag, rule.name)
        if rule.kind in ("requests", "tokens"):
            tat = self._tat.get(key, now)
            return RuleState(rule, rate_remaining(rule, tat, now), max(0.0, tat - now))
        if rule.kind == "parallel":
            return RuleState(rule, max(0, rule.limit - len(self._live(key, now))), 0.0)
        _, window = self._window(rule, tag, now, create=False)
        self._usage.record(rule, window.spent + window.held)
        remaining = max(0, rule.limit - window.spent - window.held)
        return RuleState(rule, remaining, max(0.0, window.end - now), window.spent)

    def _live(self, key: tuple[str, str], now: float) -> dict[str, float]:
        leases = self._leases.get(key)
        if leases is None:
            return {}
        expired = [rid for rid, until in leases.items() if until <= now]
        for rid in expired:
            del leases[rid]
        return leases

    def _window(
        self, rule: Rule, tag: str, now: float, *, create: bool = True
    ) -> tuple[str, _Window]:
        wid, end = window_at(rule.window, now)
        window = self._windows.get((tag, rule.name, wid))
        if window is None:
            window = _Window(end)
            if create:
                self._windows[(tag, rule.name, wid)] = window
        return wid, window

    def _alert(self, alert: Alert) -> None:
        try:
            self._events.alert(alert)
        except Exception:
            log.exception("the alert callback failed")

    # -- housekeeping --------------------------------------------------------------------------

    def sweep(self) -> None:
        """Forget what no longer limits anything: full buckets, expired leases, windows ended a
        day ago with nothing held (so that idle keys do not grow memory for ever)."""
        now = self._clock.time()
        self._tat = {k: tat for k, tat in self._tat.items() if tat > now}
        for key in list(self._leases):
            if not self._live(key, now):
                del self._leases[key]
        self._windows = {
            k: w for k, w in self._windows.items() if w.end + DAY_S > now or w.held > 0
        }

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.sweep()
