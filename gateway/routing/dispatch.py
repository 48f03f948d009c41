"""Dispatch: pick a backend with the group's strategy, call its provider, keep the live state.

Every attempt goes through the backend's breaker; failures are retried on other backends as
:mod:`gateway.routing.retry` allows; fallbacks to other groups are the relay's job.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from gateway.errors import (
    GatewayError,
    RateLimitError,
    UpstreamConnectError,
    UpstreamStatusError,
    UpstreamUnavailableError,
)
from gateway.providers.base import UpstreamRequest, UpstreamResponse, UpstreamStream
from gateway.routing.backends import Backend, ModelGroup
from gateway.routing.base import RouteRequest, split_choice
from gateway.routing.retry import backoff_s, is_retryable, retry_after_s

RequestFor = Callable[[Backend], UpstreamRequest]


class DispatchObserver(Protocol):
    """Told about each attempt: the backend chosen (before the call), its failure, and its
    retry (the relay counts them in metrics; a request's trace makes a span of each)."""

    def routed(self, group: ModelGroup, backend: Backend, reason: str) -> None: ...

    def attempt_failed(self, group: ModelGroup, backend: Backend, error: GatewayError) -> None: ...

    def retried(self, group: ModelGroup, backend: Backend) -> None: ...


T = TypeVar("T")


@dataclass(slots=True)
class Dispatched:
    """The outcome of a non-streaming dispatch."""

    response: UpstreamResponse
    backend: Backend
    upstream_s: float


class OpenStream:
    """An upstream stream that holds its backend's in-flight slot until it is closed.

    Iterate :attr:`chunks`; always call :meth:`aclose` (it is idempotent).
    """

    __slots__ = ("_closed", "_stream", "backend", "upstream_s")

    def __init__(self, stream: UpstreamStream, backend: Backend, upstream_s: float) -> None:
        self._stream = stream
        self._closed = False
        self.backend = backend
        self.upstream_s = upstream_s

    def chunks(self) -> AsyncIterator[bytes]:
        """The upstream's SSE bytes as they arrive."""
        return aiter(self._stream)

    async def aclose(self) -> None:
        """Release the upstream connection (cancelling it if unfinished) and the backend slot."""
        if self._closed:
            return
        self._closed = True
        self.backend.in_flight -= 1
        await self._stream.aclose()


async def _attempt(
    group: ModelGroup,
    route: RouteRequest,
    call: Callable[[Backend], Awaitable[T]],
    observer: DispatchObserver | None = None,
) -> tuple[T, Backend, float]:
    """Run ``call`` on backends the strategy picks until one succeeds or the group gives up.

    A refused connection opens that backend's breaker and moves on at once (the request never
    reached it). A retryable failure moves on after a jittered back-off, within the group's
    attempts and retry budget. Anything else is the request's fault and is raised at once.
    On success the backend's in-flight slot stays taken (the caller releases it).

    Raises:
        GatewayError: the last failure, or 503 when no backend was available at all.
    """
    retry = group.settings.retry
    group.retry_budget.deposit()
    tried: list[Backend] = []
    last: GatewayError | None = None
    retries = 0
    while True:
        # Untried backends first; once retrying, a still-available one may be tried again.
        candidates = group.candidates(tried) or (group.candidates() if retries else [])
        if not candidates:
            break
        index, reason = split_choice(group.strategy.choose(route, candidates))
        backend = candidates[index]
        if observer:
            observer.routed(group, backend, reason)
        backend.in_flight += 1
        backend.health.on_attempt()
        started = time.perf_counter()
        try:
            result = await call(backend)
        except GatewayError as exc:
            backend.in_flight -= 1
            exc.backend = backend.name
            if observer:
                observer.attempt_failed(group, backend, exc)
            tried.append(backend)
            last = exc
            if isinstance(exc, UpstreamConnectError):
                backend.health.trip(backend.health.settings.cooldown_s)
                continue
            if not is_retryable(exc):
                raise
            wait = retry_after_s(exc)
            if (
                wait is not None
                and isinstance(exc, UpstreamStatusError)
                and exc.upstream_status == 429
            ):
                backend.health.trip(wait, rate_limited=True)
            else:
                backend.health.on_failure()
            retries += 1
            if retries >= retry.attempts or not group.retry_budget.withdraw():
                raise
            if observer:
                observer.retried(group, backend)
            await asyncio.sleep(backoff_s(retries, retry.backoff_ms, retry.max_backoff_ms))
            continue
        except BaseException:
            backend.in_flight -= 1
            raise
        return result, backend, time.perf_counter() - started
    if last is not None:
        raise last
    raise _unavailable(group)


def _unavailable(group: ModelGroup) -> GatewayError:
    """No backend can take a request: 429 when they are all rate limited, else 503; both say
    when to come back."""
    benched = [b.health for b in group.backends if not b.draining]
    wait = min((h.reopens_in() for h in benched), default=0.0)
    headers = {"retry-after": str(max(1, math.ceil(wait)))} if wait else {}
    if benched and all(h.rate_limited for h in benched):
        return RateLimitError(
            f"Every backend of model `{group.name}` is rate limited.",
            code="upstream_rate_limited",
            headers=headers,
        )
    return UpstreamUnavailableError(
        f"No backend of model `{group.name}` is available.", headers=headers
    )


async def dispatch(
    group: ModelGroup,
    route: RouteRequest,
    request_for: RequestFor,
    observer: DispatchObserver | None = None,
) -> Dispatched:
    """Send a non-streaming request to one of ``group``'s backends (with retries).

    Raises:
        GatewayError: see :func:`_attempt`.
    """
    response, backend, upstream_s = await _attempt(
        group, route, lambda b: b.provider.send(request_for(b)), observer
    )
    backend.in_flight -= 1
    backend.health.on_success(latency_s=upstream_s)
    return Dispatched(response, backend, upstream_s)


async def dispatch_stream(
    group: ModelGroup,
    route: RouteRequest,
    request_for: RequestFor,
    observer: DispatchObserver | None = None,
) -> OpenStream:
    """Open a stream on one of ``group``'s backends (with retries until it opens); the caller
    must ``aclose`` it.

    Raises:
        GatewayError: see :func:`_attempt`.
    """
    stream, backend, upstream_s = await _attempt(
        group, route, lambda b: b.provider.open_stream(request_for(b)), observer
    )
    return OpenStream(stream, backend, upstream_s)
