"""The pipeline's telemetry recorder: every metric a request produces, recorded in one place.

Also the :class:`~gateway.routing.dispatch.DispatchObserver` that counts routing decisions and
retries. Methods are cheap (labelled children are cached) and never raise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from gateway.errors import GatewayError, status_of
from gateway.pipeline.context import RequestContext
from gateway.routing.backends import Backend, ModelGroup
from gateway.schemas.openai import TokenCounts, usage_decoder
from gateway.sse import parse_event, split_events
from gateway.telemetry.backends import BREAKER_STATES
from gateway.telemetry.metrics import GatewayMetrics

Account = Callable[[RequestContext, str, int, TokenCounts | None], None]
"""The accounting stage, told how a finished request ended: (ctx, backend, the status the client
got, the usage the upstream reported or None)."""


def usage_of(body: bytes) -> TokenCounts | None:
    """Token usage in an OpenAI or Anthropic response body or event, if it has any."""
    try:
        return usage_decoder.decode(body).usage
    except Exception:  # noqa: BLE001 - anything unreadable simply has no usage
        return None


def usage_in_stream_tail(tail: bytes) -> TokenCounts | None:
    """The usage of the last usage-bearing SSE event in ``tail`` (None when none has any)."""
    for event in reversed(split_events(tail)):
        if b'"usage"' not in event:
            continue
        parsed = parse_event(event)
        usage = usage_of(parsed.data) if parsed and parsed.data.startswith(b"{") else None
        if usage is not None:
            return usage
    return None


class Telemetry:
    """Records requests, upstream waits, tokens, routing and backend outcomes."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def rejected(self, ctx: RequestContext, error: GatewayError) -> None:
        """A request refused before routing (counted under model ``-``, so 4xx rates show)."""
        self.metrics.record_request(
            "-", "none", ctx.dialect.endpoint, status_of(error), time.perf_counter() - ctx.started
        )

    def in_flight(self, group: ModelGroup) -> InFlight:
        """The group's in-flight gauge, taken for this request (release it exactly once)."""
        gauge = self.metrics.child(self.metrics.in_flight, group.name)
        gauge.inc()
        return gauge

    def body_answered(
        self, ctx: RequestContext, backend: Backend, status: int, body: bytes
    ) -> tuple[float, TokenCounts | None]:
        """A dispatched request answered with a whole body: everything it records at once
        (its latency, the upstream wait, the backend's state); returns the total seconds
        and the usage the body reports."""
        total = time.perf_counter() - ctx.started
        group = ctx.model_group.name
        m = self.metrics.exchange(group, backend.name, ctx.dialect.endpoint)
        m.upstream_seconds.observe(ctx.upstream_s)
        m.overhead_seconds.observe(total - ctx.upstream_s)
        m.request(status, total)
        m.breaker_state.set(BREAKER_STATES[backend.breaker])
        m.backend_in_flight.set(backend.in_flight)
        return total, usage_of(body)

    def answered(self, ctx: RequestContext, backend: str, status: int) -> float:
        """A request fully answered (body sent, or stream ended); returns its total seconds."""
        total = time.perf_counter() - ctx.started
        self.metrics.record_request(
            ctx.model_group.name, backend, ctx.dialect.endpoint, status, total
        )
        return total

    def upstream(self, ctx: RequestContext, backend: str, overhead_s: float) -> None:
        """The wait on the upstream and the gateway's own share of the time."""
        self.metrics.record_upstream(
            ctx.model_group.name, backend, ctx.dialect.endpoint, ctx.upstream_s, overhead_s
        )

    def failed(self, ctx: RequestContext, error: BaseException, backend: str) -> None:
        """A dispatched request failed before its answer started (counted when it is a
        gateway error; under ``backend`` when the error names none)."""
        if isinstance(error, GatewayError):
            self.metrics.record_request(
                ctx.model_group.name,
                error.backend or backend,
                ctx.dialect.endpoint,
                status_of(error),
                time.perf_counter() - ctx.started,
            )

    def tokens(self, ctx: RequestContext, backend: str, prompt: int, completion: int) -> None:
        """Token usage the upstream reported for a request."""
        if prompt or completion:
            m = self.metrics.exchange(ctx.model_group.name, backend, ctx.dialect.endpoint)
            m.tokens(prompt, completion)

    def first_token(self, ctx: RequestContext, backend: Backend) -> None:
        """A stream's first chunk arrived: its time to first token, for metrics and routing."""
        ttft = time.perf_counter() - ctx.started
        m = self.metrics
        m.child(m.ttft_seconds, ctx.model_group.name, backend.name).observe(ttft)
        backend.health.ttft.observe(ttft)
        backend.health.latency.observe(ttft)

    def cache(self, group: str, result: str, tier: str = "-") -> None:
        """A cache lookup's result (``hit``, ``miss``, ``bypass``, ``coalesced``)."""
        m = self.metrics
        m.child(m.cache_requests, group, result, tier).inc()

    def fallback(self, group: str, target: str, reason: str) -> None:
        m = self.metrics
        m.child(m.fallbacks, group, target, reason).inc()

    def outcome(self, group: ModelGroup, backend: Backend, error: GatewayError | None) -> None:
        """A backend's breaker, load and (on failure) error kind after an exchange."""
        m = self.metrics
        m.child(m.breaker_state, group.name, backend.name).set(BREAKER_STATES[backend.breaker])
        m.child(m.backend_in_flight, group.name, backend.name).set(backend.in_flight)
        if error is not None:
            m.child(m.backend_errors, group.name, backend.name, type(error).__name__).inc()

    # DispatchObserver
    def routed(self, group: ModelGroup, backend: Backend, reason: str) -> None:
        m = self.metrics
        m.child(m.routing_decisions, group.name, group.settings.routing.strategy, reason).inc()

    def attempt_failed(self, group: ModelGroup, backend: Backend, error: GatewayError) -> None:
        """Nothing: a group's failure is counted once, by :meth:`outcome`, after its last
        attempt."""

    def retried(self, group: ModelGroup, backend: Backend) -> None:
        m = self.metrics
        m.child(m.retries, group.name, backend.name).inc()


class InFlight(Protocol):
    """A taken in-flight gauge (prometheus_client's ``Gauge`` child)."""

    def dec(self, amount: float = 1) -> None: ...
