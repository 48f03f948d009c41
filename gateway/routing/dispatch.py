"""Dispatch: pick a backend with the group's strategy, call its provider, keep the live state.

A request whose connection could not even be made (:class:`UpstreamConnectError`) never reached
the upstream, so it is tried on the group's next backend; any other failure is returned to the
caller as it is. (Retries, breakers and fallbacks proper are the resilience layer's job.)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway.errors import GatewayError, UpstreamConnectError, UpstreamUnavailableError
from gateway.providers.base import UpstreamRequest, UpstreamResponse, UpstreamStream
from gateway.routing.backends import Backend, ModelGroup
from gateway.routing.base import RouteRequest

RequestFor = Callable[[Backend], UpstreamRequest]
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


def _exhausted(group: ModelGroup, last: UpstreamConnectError | None) -> GatewayError:
    """The error once every candidate refused: the last refusal (502), else 503."""
    if last is not None:
        return last
    return UpstreamUnavailableError(f"No backend of model `{group.name}` is available.")


async def _attempt(
    group: ModelGroup, route: RouteRequest, call: Callable[[Backend], Awaitable[T]]
) -> tuple[T, Backend, float]:
    """Run ``call`` on the backend the strategy picks, moving on while connections are refused.

    On success the backend's in-flight slot stays taken (the caller releases it) and the result
    comes with the backend and the seconds ``call`` took. On failure the slot is released.
    """
    candidates = group.candidates()
    last: UpstreamConnectError | None = None
    while candidates:
        backend = candidates[group.strategy.choose(route, candidates)]
        backend.in_flight += 1
        started = time.perf_counter()
        try:
            result = await call(backend)
        except UpstreamConnectError as exc:
            backend.in_flight -= 1
            backend.mark_down()
            candidates.remove(backend)
            last = exc
            continue
        except GatewayError as exc:
            backend.in_flight -= 1
            exc.backend = backend.name
            raise
        except BaseException:
            backend.in_flight -= 1
            raise
        backend.mark_up()
        return result, backend, time.perf_counter() - started
    raise _exhausted(group, last)


async def dispatch(group: ModelGroup, route: RouteRequest, request_for: RequestFor) -> Dispatched:
    """Send a non-streaming request to one of ``group``'s backends.

    Raises:
        UpstreamConnectError: every backend refused the connection (502).
        UpstreamError: the chosen backend failed in any other way.
    """
    response, backend, upstream_s = await _attempt(
        group, route, lambda b: b.provider.send(request_for(b))
    )
    backend.in_flight -= 1
    return Dispatched(response, backend, upstream_s)


async def dispatch_stream(
    group: ModelGroup, route: RouteRequest, request_for: RequestFor
) -> OpenStream:
    """Open a stream on one of ``group``'s backends; the caller must ``aclose`` it.

    Raises:
        UpstreamConnectError: every backend refused the connection (502).
        UpstreamError: the chosen backend failed before the stream opened.
    """
    stream, backend, upstream_s = await _attempt(
        group, route, lambda b: b.provider.open_stream(request_for(b))
    )
    return OpenStream(stream, backend, upstream_s)
