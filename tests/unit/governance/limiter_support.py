"""What the limiter tests share: an events recorder, rule makers, and a harness that opens
limiters of either built-in kind (``memory`` on a ManualClock, ``redis`` on a real server)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from gateway_limits.memory import MemoryLimiter
from gateway_limits.redis_limiter import RedisLimiter

from gateway.clock import ManualClock
from gateway.governance.limiter import Alert, Demand, Limiter, LimiterEvents, Rule
from tests.support.redis_server import RedisServer, running_redis

_prefixes = itertools.count()
_requests = itertools.count()
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a Friday


@dataclass
class Recorder:
    """Collects what a limiter reports."""

    alerts: list[Alert] = field(default_factory=list)
    degraded: list[bool] = field(default_factory=list)
    calls: list[bool] = field(default_factory=list)

    @property
    def events(self) -> LimiterEvents:
        return LimiterEvents(
            alert=self.alerts.append,
            backend_call=lambda seconds, ok: self.calls.append(ok),
            degraded=self.degraded.append,
        )


def demand(rules: tuple[Rule, ...], tag: str = "k:a", **fields: Any) -> Demand:
    """A demand with a fresh request id."""
    return Demand(f"req-{next(_requests)}", tag, rules, **fields)


@dataclass
class Harness:
    """Opens limiters of one kind that share their state (one clock, or one key prefix)."""

    kind: str
    server: RedisServer | None
    clock: ManualClock = field(default_factory=lambda: ManualClock(start=START))
    prefix: str = field(default_factory=lambda: f"t{next(_prefixes)}")
    opened: list[Limiter] = field(default_factory=list)
    memory: MemoryLimiter | None = None

    def make(self, recorder: Recorder | None = None, **options: Any) -> Limiter:
        events = (recorder or Recorder()).events
        limiter: Limiter
        if self.kind == "memory":
            # one process: a second "instance" is the same limiter (they share the state)
            if self.memory is None:
                self.memory = MemoryLimiter(clock=self.clock, events=events)
            limiter = self.memory
        else:
            assert self.server is not None
            limiter = RedisLimiter(
                url=self.server.url, prefix=self.prefix, clock=self.clock, events=events, **options
            )
        self.opened.append(limiter)
        return limiter

    async def settled(self) -> None:
        """Wait until every settlement so far is applied."""
        for limiter in self.opened:
            if isinstance(limiter, RedisLimiter):
                assert await limiter.flush(force=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    h = Harness(str(request.param), server)
    yield h
    for limiter in {id(x): x for x in h.opened}.values():
        await limiter.aclose()
