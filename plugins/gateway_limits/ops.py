"""Settlements waiting for Redis, and how a script call carries them.

An :class:`Op` is what one settlement changes in Redis: for each ``tokens``, ``parallel`` and
``budget`` rule of the demand, an entry (``requests`` rules have nothing to settle). A *charge*
(the real use of a reservation a degraded replica made locally) is an op with nothing reserved
and no lease. :class:`PendingOps` queues ops per hash tag, bounded in total; the limiter takes a
tag's ops to send them with that tag's next reservation, or in a batch of their own.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from gateway.governance.limiter import Demand, Reservation, Rule
from gateway.governance.records import window_seconds

log = logging.getLogger(__name__)

KIND_CODE = {"requests": "r", "tokens": "t", "parallel": "p", "budget": "b"}
MAX_BATCH = 256
"""The most ops one script call carries (bounds the call's size and the server's time in it)."""

Arg = str | int | float
KeyOf = Callable[[str, Rule], str]


@lru_cache(maxsize=4096)
def window_spec(rule: Rule) -> str:
    """How the script is told a budget's window: ``day``/``week``/``month`` or its seconds."""
    seconds = window_seconds(rule.window)
    return rule.window if seconds is None else str(seconds)


@lru_cache(maxsize=4096)
def thresholds_arg(rule: Rule) -> str:
    """A budget's thresholds, ascending, as the script reads them (``repr`` round-trips)."""
    return ",".join(repr(float(t)) for t in sorted(rule.thresholds))


@dataclass(slots=True)
class Op:
    """One settlement (or charge) of one demand, for Redis.

    Attributes:
        entries: ``(rule, window id)`` for each rule that settling changes (window id for
            budgets, empty otherwise).
        since: when it was queued (monotonic), so that the flusher sends only ops that a
            reservation of their tag did not carry off in time.
    """

    tag: str
    request_id: str
    reserved_tokens: int
    tokens: int
    reserved_cost: int
    cost: int
    entries: tuple[tuple[Rule, str], ...]
    since: float = 0.0


def settlement(reservation: Reservation, tokens: int, cost: int, since: float) -> Op | None:
    """The op settling a reservation made in Redis (None: nothing to change)."""
    demand = reservation.demand
    entries = _entries(demand, reservation.windows, ("tokens", "parallel", "budget"))
    if not entries:
        return None
    return Op(
        demand.tag,
        demand.request_id,
        reservation.tokens,
        tokens,
        demand.cost,
        cost,
        entries,
        since,
    )


def charge(demand: Demand, windows: tuple[str, ...], tokens: int, cost: int, since: float) -> Op:
    """The op charging Redis with what a locally reserved request used (tokens and money)."""
    entries = _entries(demand, windows, ("tokens", "budget"))
    return Op(demand.tag, "", 0, tokens, 0, cost, entries, since)


def _entries(
    demand: Demand, windows: tuple[str, ...], kinds: tuple[str, ...]
) -> tuple[tuple[Rule, str], ...]:
    budgets = iter(windows)
    entries: list[tuple[Rule, str]] = []
    for rule in demand.rules:
        wid = next(budgets, "") if rule.kind == "budget" else ""
        if rule.kind in kinds:
            entries.append((rule, wid))
    return tuple(entries)


@lru_cache(maxsize=4096)
def rules_arg(rules: tuple[Rule, ...]) -> str:
    """A demand's rules as the scripts read them: ``kind limit spec;...`` (cached: a key's
    rules are the same tuple for every request of a model group)."""
    return ";".join(
        f"{KIND_CODE[r.kind]} {r.limit} {window_spec(r) if r.kind == 'budget' else '_'}"
        for r in rules
    )


def encode(demand: Demand | None, ops: Iterable[Op], key_of: KeyOf) -> tuple[list[str], list[Arg]]:
    """KEYS and ARGV of a RESERVE call: ``demand``'s rules (None: settle only) and ``ops``."""
    keys: list[str] = []
    argv: list[Arg]
    if demand is None:
        argv = ["", 0, 0, 0, ""]
    else:
        keys = [key_of(demand.tag, rule) for rule in demand.rules]
        argv = [demand.request_id, demand.tokens, demand.cost, demand.lease_s]
        argv.append(rules_arg(demand.rules))
    index = {key: i + 1 for i, key in enumerate(keys)}
    for op in ops:
        parts = [f"{op.reserved_tokens} {op.tokens} {op.reserved_cost} {op.cost}"]
        for rule, wid in op.entries:
            key = key_of(op.tag, rule)
            at = index.get(key)
            if at is None:
                keys.append(key)
                at = index[key] = len(keys)
            th = (thresholds_arg(rule) or "_") if rule.kind == "budget" else "_"
            parts.append(f"{at} {KIND_CODE[rule.kind]} {rule.limit} {wid or '_'} {th}")
        argv += [op.request_id, ";".join(parts)]
    return keys, argv


def rows(text: str) -> list[list[str]]:
    """A reply's ``;``-joined rows of space-separated fields."""
    return [row.split(" ") for row in text.split(";")] if text else []


@dataclass(slots=True)
class PendingOps:
    """Ops per tag, oldest first, at most ``limit`` in all (beyond it the oldest is dropped)."""

    limit: int
    by_tag: dict[str, deque[Op]] = field(default_factory=dict)
    count: int = 0
    dropped: int = 0

    def add(self, op: Op) -> int:
        """Queue ``op``; answer how many its tag now has."""
        queue = self.by_tag.setdefault(op.tag, deque())
        queue.append(op)
        self.count += 1
        while self.count > self.limit:
            self._drop_oldest()
        return len(queue)

    def take(self, tag: str, most: int = MAX_BATCH) -> list[Op]:
        """Remove and return up to ``most`` of ``tag``'s ops, oldest first."""
        queue = self.by_tag.get(tag)
        if not queue:
            return []
        taken = [queue.popleft() for _ in range(min(most, len(queue)))]
        if not queue:
            del self.by_tag[tag]
        self.count -= len(taken)
        return taken

    def take_any(self, tag: str, most: int = MAX_BATCH) -> list[Op]:
        """Like :meth:`take`, topped up with other tags' ops (for one Redis, where a script may
        touch any key; never on a Cluster)."""
        taken = self.take(tag, most)
        for other in list(self.by_tag):
            if len(taken) >= most:
                break
            taken += self.take(other, most - len(taken))
        return taken

    def put_back(self, ops: list[Op]) -> None:
        """Return ops that could not be sent to the front of their queues (retried later)."""
        for op in reversed(ops):
            self.by_tag.setdefault(op.tag, deque()).appendleft(op)
            self.count += 1
        while self.count > self.limit:
            self._drop_oldest()

    def due(self, before: float, most: int = MAX_BATCH) -> list[str]:
        """Tags with an op queued before ``before`` or with at least ``most`` queued."""
        return [t for t, q in self.by_tag.items() if q[0].since <= before or len(q) >= most]

    def _drop_oldest(self) -> None:
        tag = min(self.by_tag, key=lambda t: self.by_tag[t][0].since)
        op = self.take(tag, 1)[0]
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning(
                "limiter: %d settlements dropped (more than %d waiting for Redis); latest: %s",
                self.dropped,
                self.limit,
                op.request_id or f"a charge of {op.tag}",
            )
