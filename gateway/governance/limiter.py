"""The limiter contract (``register_limiters``): rate, concurrency and budget limits, reserved
before dispatch and settled after, all-or-nothing per request.

A request brings a :class:`Demand`: every :class:`Rule` that applies to it (its key's, its
tenant's, their per-model-group ones), the tokens it may use (prompt estimate plus its output
ceiling) and its worst-case cost. :meth:`Limiter.reserve` checks and takes all of it in one step
or none of it; :meth:`Limiter.settle` later replaces the reservation with what was really used:
unused tokens and money are given back, an overage is charged (and, for tokens, becomes debt that
the next requests wait out), and the parallel slot is freed.

Algorithms (both built-ins implement exactly these, so one process and a fleet agree):

- ``requests`` and ``tokens``: GCRA over one minute. Emission interval ``T = 60 s / limit``;
  a whole minute's worth may burst. A demand of ``n`` is admitted when
  ``max(tat, now) + n*T - now <= 60 s``; ``tat`` then moves by ``n*T``. A demand above the limit
  is clamped to the limit (admitted only from a full bucket; the rest is charged at settle, as
  debt). Settling moves ``tat`` by ``(actual - reserved) * T``, never below ``now``.
- ``parallel``: leases (one per request id) that expire after ``Demand.lease_s`` if never settled,
  so that a crashed replica cannot hold slots for ever.
- ``budget``: per window, ``spent`` (settled) plus ``held`` (reserved, not yet settled) may not
  exceed the limit. Calendar windows are UTC (week: from Monday); duration windows are fixed
  windows from the Unix epoch. Windows roll over lazily, when next touched: nothing polls.
  Settling charges the window the request was reserved in. An alert fires once per threshold per
  window, when settled spend first reaches it.

The shared built-in (``redis``) does all of a reservation in one atomic server-side script on
Redis's clock; the keys of one demand share a hash slot (:attr:`Demand.tag`), so it runs on Redis
Cluster; settlements are batched off the request's path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias, runtime_checkable

RuleKind = Literal["requests", "tokens", "parallel", "budget"]
RATE_PERIOD_S = 60.0


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit on one scope.

    Attributes:
        scope: whose limit: ``key:<id>``, ``tenant:<name>``, ``key:<id>|model:<group>``,
            ``tenant:<name>|model:<group>``.
        kind: what it counts.
        limit: per minute (``requests``, ``tokens``), at once (``parallel``), or nano-dollars
            per window (``budget``).
        window: a budget's window (``day``, ``week``, ``month``, ``6h``...); empty otherwise.
        thresholds: a budget's alert thresholds, fractions of ``limit``.
    """

    scope: str
    kind: RuleKind
    limit: int
    window: str = ""
    thresholds: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        """A stable identifier of the rule (storage keys, metrics, logs)."""
        return f"{self.scope}#{self.kind}{':' + self.window if self.window else ''}"


@dataclass(slots=True)
class Demand:
    """What one request asks of its limits.

    Attributes:
        request_id: the request's id (the parallel lease's id).
        tag: the hash tag every storage key of these rules shares (the tenant, else the key).
        rules: every rule that applies; empty demands are never sent.
        tokens: tokens to reserve for ``tokens`` rules.
        cost: nano-dollars to reserve for ``budget`` rules.
        lease_s: the longest a parallel slot is held when never settled.
    """

    request_id: str
    tag: str
    rules: tuple[Rule, ...]
    tokens: int = 0
    cost: int = 0
    lease_s: float = 900.0


@dataclass(slots=True)
class RuleState:
    """A rule as it stands (after the reservation, when one was made).

    Attributes:
        remaining: requests, tokens, slots or nano-dollars still available now (never below 0).
        reset_s: seconds until a rate rule's bucket is full again, or until a budget's window
            ends; 0 for ``parallel``.
        used: budget only: settled spend in the window (nano-dollars); 0 for the others.
    """

    rule: Rule
    remaining: int
    reset_s: float
    used: int = 0


@dataclass(slots=True)
class Reservation:
    """What :meth:`Limiter.reserve` took, to hand back to :meth:`Limiter.settle` exactly once.

    Attributes:
        demand: the admitted demand.
        tokens: the tokens actually reserved (``demand.tokens`` clamped per rule is the
            limiter's business; this is what settle compares the actual use with).
        windows: per budget rule of the demand (in order), the id of the window charged.
        local: reserved by a degraded (fail-open) local limiter rather than the shared one.
    """

    demand: Demand
    tokens: int
    windows: tuple[str, ...] = ()
    local: bool = False


@dataclass(slots=True)
class Grant:
    """The answer to a demand.

    Attributes:
        reservation: what was taken when admitted; None when refused.
        states: one per rule of the demand, in order.
        denied: the first rule that refused (None when admitted).
        retry_after_s: when refused, the earliest the same demand could be admitted
            (``math.inf`` when never: a demand above a parallel or budget limit that cannot
            free up in this window is reported with the window's end instead).
    """

    reservation: Reservation | None
    states: tuple[RuleState, ...]
    denied: Rule | None = None
    retry_after_s: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.reservation is not None


@dataclass(slots=True)
class Alert:
    """A budget's settled spend reached one of its thresholds (once per threshold per window)."""

    rule: Rule
    window: str
    threshold: float
    spent: int
    limit: int


class LimiterUnavailableError(Exception):
    """The shared limiter cannot be reached and the configuration says ``fail_closed``
    (the gateway answers 503)."""


@dataclass(slots=True)
class LimiterEvents:
    """What a limiter reports to the gateway (metrics, alerts); each callback must be cheap
    and must not raise.

    Attributes:
        alert: a budget threshold was reached.
        backend_call: a call to the shared store took ``seconds``; ``ok`` False when it failed.
        degraded: the limiter switched to (True) or back from (False) enforcing a local share
            because the shared store is unreachable (``fail_open``).
    """

    alert: Callable[[Alert], None] = lambda alert: None
    backend_call: Callable[[float, bool], None] = lambda seconds, ok: None
    degraded: Callable[[bool], None] = lambda on: None


@runtime_checkable
class Limiter(Protocol):
    """Reserves and settles demands (see the module docstring for the semantics)."""

    async def reserve(self, demand: Demand) -> Grant:
        """Check every rule of ``demand`` and take all of it, or nothing.

        Raises:
            LimiterUnavailableError: the shared store is unreachable and the limiter fails
                closed.
        """
        ...

    def settle(self, reservation: Reservation, tokens: int, cost: int) -> None:
        """Replace ``reservation`` with the real use (``tokens``, ``cost`` nano-dollars; 0 and 0
        for a request that failed before using anything) and free its parallel slot. Never
        blocks and never raises: the work is queued and batched; :meth:`aclose` flushes it."""
        ...

    async def states(self, rules: Sequence[Rule], tag: str) -> list[RuleState]:
        """The current state of ``rules`` (without reserving anything), for the admin API."""
        ...

    def budget_used(self, scope: str) -> float | None:
        """The highest fraction of any budget of ``scope`` used (settled plus held) as last
        seen by this process (no I/O), or None when unknown; cost policies read it."""
        ...

    async def start(self) -> None:
        """Begin background work (settlement flushing, heartbeats); called once, at start-up."""
        ...

    async def aclose(self) -> None:
        """Flush queued settlements and release connections (once, at shutdown)."""
        ...


LimiterFactory: TypeAlias = Callable[..., Limiter]
"""What ``register_limiters`` registers: called with the limiter's options as keyword arguments,
plus ``clock`` (the gateway's :class:`~gateway.clock.Clock`) and ``events``
(:class:`LimiterEvents`); ``TypeError``/``ValueError`` become config errors."""
