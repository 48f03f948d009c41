"""What the gateway learns about a backend from its own traffic: latency, errors, a breaker.

- Peak-EWMA latency and TTFT: a slower sample replaces the average at once, faster ones pull it
  down with a time constant, so a backend that turns slow is avoided immediately and trusted
  again gradually.
- Error rate over the last ``window`` outcomes.
- A circuit breaker: closed; open after ``consecutive_failures`` failures in a row, or a failure
  rate of at least ``failure_rate`` over ``window`` outcomes (once ``min_requests`` were seen);
  half-open after ``cooldown_s``, letting one probe through; closed again when it succeeds.
  A 429 with Retry-After opens it for that long.
- A health hint (``hinted_down``): the control plane's health sweep saw the backend down from
  outside (``gateway.control.hints``). A hint, never the only truth: it neither opens the
  breaker nor marks the backend unhealthy; :meth:`ModelGroup.candidates
  <gateway.routing.backends.ModelGroup.candidates>` offers a hinted-down backend only when no
  other is available, so it is tried last, and never excluded.

Time comes from the injected :class:`~gateway.clock.Clock` (the EWMA's decay, the breaker's
cool-down and Retry-After), so tests move a :class:`~gateway.clock.ManualClock` instead of
sleeping; a ``now`` passed to a method overrides it.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from gateway.clock import SYSTEM_CLOCK, Clock


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    """Thresholds of the circuit breaker (see the module docstring)."""

    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_requests: int = 10
    cooldown_s: float = 10.0


class PeakEwma:
    """Peak-sensitive exponentially weighted moving average (seconds)."""

    __slots__ = ("_at", "clock", "tau_s", "value")

    def __init__(self, tau_s: float = 10.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self.tau_s = tau_s
        self.clock = clock
        self.value: float | None = None
        self._at = 0.0

    def observe(self, sample: float, now: float | None = None) -> None:
        now = self.clock.monotonic() if now is None else now
        if self.value is None or sample > self.value:
            self.value = sample
        else:
            alpha = 1 - math.exp(-max(now - self._at, 0.0) / self.tau_s)
            self.value += alpha * (sample - self.value)
        self._at = now


class BackendHealth:
    """Live statistics and breaker of one backend."""

    def __init__(
        self, settings: BreakerSettings | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.settings = settings or BreakerSettings()
        self.clock = clock
        self.latency = PeakEwma(clock=clock)
        self.ttft = PeakEwma(clock=clock)
        self._outcomes: deque[bool] = deque(maxlen=self.settings.window)
        self._consecutive = 0
        self.state = BreakerState.CLOSED
        self._open_until = 0.0
        self._probing = False
        self.healthy = True  # the active health check's last verdict
        self.trips = 0
        self.rate_limited = False  # opened by a 429 rather than by failures
        self.hinted_down = False  # the control plane's last health sweep saw it down

    @property
    def error_rate(self) -> float:
        """Share of failures among the recent outcomes (0 when none)."""
        return self._outcomes.count(False) / len(self._outcomes) if self._outcomes else 0.0

    def _refresh(self, now: float) -> None:
        if self.state is BreakerState.OPEN and now >= self._open_until:
            self.state = BreakerState.HALF_OPEN
            self._probing = False

    def current_state(self, now: float | None = None) -> BreakerState:
        """The breaker's state, moving from open to half-open once the cool-down passed."""
        self._refresh(self.clock.monotonic() if now is None else now)
        return self.state

    def admits(self, now: float | None = None) -> bool:
        """Whether a request may be sent now (a half-open breaker admits one probe at a time)."""
        state = self.current_state(now)
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and not self._probing

    def on_attempt(self) -> None:
        """A request is being sent (in half-open state it is the probe)."""
        if self.state is BreakerState.HALF_OPEN:
            self._probing = True

    def on_success(self, latency_s: float | None = None, ttft_s: float | None = None) -> None:
        if latency_s is not None:
            self.latency.observe(latency_s)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        self._outcomes.append(True)
        self._consecutive = 0
        self.healthy = True
        if self.state is not BreakerState.CLOSED:
            self.state = BreakerState.CLOSED
            self._probing = False
            self.rate_limited = False
            self._outcomes.clear()

    def on_failure(self, now: float | None = None) -> None:
        now = self.clock.monotonic() if now is None else now
        self._outcomes.append(False)
        self._consecutive += 1
        s = self.settings
        if (
            self.state is BreakerState.HALF_OPEN
            or self._consecutive >= s.consecutive_failures
            or (len(self._outcomes) >= s.min_requests and self.error_rate >= s.failure_rate)
        ):
            self.trip(s.cooldown_s, now)

    def trip(self, seconds: float, now: float | None = None, *, rate_limited: bool = False) -> None:
        """Open the breaker for ``seconds`` (a 429's Retry-After, or the cool-down)."""
        now = self.clock.monotonic() if now is None else now
        if self.state is not BreakerState.OPEN:
            self.trips += 1
            self.rate_limited = rate_limited
        self.state = BreakerState.OPEN
        self._open_until = max(self._open_until, now + seconds)
        self._probing = False

    def reopens_in(self, now: float | None = None) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        now = self.clock.monotonic() if now is None else now
        return max(self._open_until - now, 0.0) if self.state is BreakerState.OPEN else 0.0
