"""Which failures are retried, how long to back off, and the budget that caps retries.

Retried (always before any byte reached the client): connections refused or reset, timeouts,
and upstream statuses 429, 500, 502, 503, 504 and 529. Everything else (a 400, a 401...) is the
request's fault and goes back to the client at once.
"""

from __future__ import annotations

import random
import time

from gateway.errors import (
    GatewayError,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})


def is_retryable(error: GatewayError) -> bool:
    """Whether another attempt (perhaps on another backend) may succeed."""
    if isinstance(error, UpstreamConnectionError | UpstreamTimeoutError):
        return True
    return isinstance(error, UpstreamStatusError) and error.upstream_status in RETRYABLE_STATUSES


_CONTEXT_LENGTH = (
    "maximum context length",
    "context length",
    "context_length_exceeded",
    "prompt is too long",
    "too many tokens",
)


def is_context_length_error(error: GatewayError) -> bool:
    """Whether the upstream refused the request because the prompt is too long for it."""
    if not isinstance(error, UpstreamStatusError) or error.upstream_status not in (400, 413):
        return False
    text = f"{error.code or ''} {error.message}".lower()
    return any(marker in text for marker in _CONTEXT_LENGTH)


def backoff_s(retry: int, base_ms: float, max_ms: float, rng: random.Random | None = None) -> float:
    """Exponential back-off with full jitter before retry number ``retry`` (1-based)."""
    ceiling = min(max_ms, base_ms * 2 ** (retry - 1))
    return (rng or random).uniform(0, ceiling) / 1000


def retry_after_s(error: GatewayError) -> float | None:
    """The upstream's ``Retry-After`` in seconds, when it sent a usable one."""
    value = error.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


class RetryBudget:
    """A token bucket: each request deposits ``ratio`` tokens, each retry takes one.

    So over time retries are at most ``ratio`` of requests, and an outage cannot be amplified
    by retries; ``minimum`` tokens are always there, refilled per second, for quiet periods.
    """

    def __init__(self, ratio: float = 0.2, minimum: float = 10.0) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self._tokens = minimum
        self._at = time.monotonic()

    def deposit(self) -> None:
        """A request was made."""
        now = time.monotonic()
        refill = (now - self._at) * self.minimum
        self._at = now
        cap = max(self.minimum, 100.0)
        self._tokens = min(cap, self._tokens + self.ratio + refill)

    def withdraw(self) -> bool:
        """Take a token for a retry; False when the budget is spent."""
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
