"""The relay at the heart of every inference route: dispatch, metrics, bodies and streams.

Handlers decode and validate, then hand an :class:`Exchange` to :meth:`Relay.run`. When the
chosen backend answers in another API's format, ``convert_for`` returns a :class:`Converter` for
it; otherwise the upstream's bytes go to the client untouched.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import msgspec
from litestar.types import ASGIApp

from gateway.batching.embeddings import BatchLimits, EmbeddingBatcher
from gateway.cache.policy import CacheStore
from gateway.errors import GatewayError, UpstreamUnavailableError, status_of
from gateway.providers.base import Endpoint, UpstreamRequest
from gateway.routes.responses import EventStream, RawResponse
from gateway.routing.backends import Backend, ModelGroup
from gateway.routing.base import RouteRequest
from gateway.routing.dispatch import (
    Dispatched,
    OpenStream,
    RequestFor,
    dispatch,
    dispatch_stream,
)
from gateway.routing.retry import is_context_length_error, is_retryable
from gateway.schemas.openai import EmbeddingRequest, TokenCounts, usage_decoder
from gateway.state import GatewayState


def with_model(body: bytes, model: str) -> bytes:
    """``body`` with its ``model`` field replaced; every other field is kept as it was."""
    data = _any_json.decode(body)
    data["model"] = model
    return _json.encode(data)


_embedding_request = msgspec.json.Decoder(EmbeddingRequest).decode
_any_json = msgspec.json.Decoder()
_json = msgspec.json.Encoder()


def usage_of(body: bytes) -> TokenCounts | None:
    """Token usage in an OpenAI or Anthropic response body or event, if it has any."""
    try:
        return usage_decoder.decode(body).usage
    except msgspec.MsgspecError:
        return None


def usage_in_stream_tail(tail: bytes) -> tuple[int, int]:
    """Prompt and completion tokens from the last usage-bearing SSE event in ``tail``."""
    for event in reversed(tail.split(b"\n\n")):
        start = event.find(b"data: {")
        if start < 0 or b'"usage"' not in event:
            continue
        usage = usage_of(event[start + 6 :])
        if usage is not None:
            return usage.prompt, usage.completion
    return 0, 0


class StreamConverter(Protocol):
    """Rewrites a stream from the upstream's format to the client's, chunk by chunk."""

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send for an upstream chunk (possibly empty)."""
        ...

    def finish(self) -> bytes:
        """Bytes to send once the upstream stream ended."""
        ...


class Converter(Protocol):
    """Converts one backend's answers to the client's API format."""

    def body(self, data: bytes) -> bytes:
        """A whole (successful) response body."""
        ...

    def stream(self) -> StreamConverter:
        """A fresh converter for one stream."""
        ...


ConvertFor = Callable[[Backend], Converter | None]


def openai_error_event(error: GatewayError) -> bytes:
    """A mid-stream failure as OpenAI SDKs expect it: a data event holding the error envelope."""
    return b"data: " + error.to_json() + b"\n\n"


@dataclass(slots=True)
class Exchange:
    """One validated client request on its way to a model group.

    Attributes:
        endpoint: the route's metrics label (``chat/completions``, ``messages``...).
        group: the model group that serves it.
        route: what the routing strategy sees.
        request_for: builds the upstream request for the backend chosen.
        stream: whether to stream the answer.
        started: ``time.perf_counter()`` when the handler started.
        request_id: the ``x-request-id``.
        store: stores a successful answer in the response cache (a cache miss), if any.
        headers: extra response headers (``x-gateway-cache``...).
    """

    endpoint: str
    group: ModelGroup
    route: RouteRequest
    request_for: RequestFor
    stream: bool
    started: float
    request_id: str
    store: CacheStore | None = None
    headers: dict[str, str] | None = None


class Relay:
    """Runs exchanges against the app's model groups and records their metrics."""

    def __init__(self, state: GatewayState) -> None:
        self.metrics = state.metrics
        self.catalog = state.catalog
        self._batchers: dict[str, EmbeddingBatcher] = {}

    def batcher_for(self, group: ModelGroup) -> EmbeddingBatcher:
        """The group's embedding batcher; its upstream calls go through routing and retries."""
        batcher = self._batchers.get(group.name)
        if batcher is None:
            limits = group.settings.batching

            async def send(body: bytes) -> bytes:
                payload = _embedding_request(body)
                route = RouteRequest(payload.model, "embeddings", payload, {})

                def request_for(backend: Backend) -> UpstreamRequest:
                    return UpstreamRequest(
                        Endpoint.EMBEDDINGS,
                        with_model(body, backend.model),
                        payload,
                        False,
                        f"batch-{id(body):x}",
                    )

                out = await dispatch(group, route, request_for, self)
                self._outcome(group, out.backend, None)
                return out.response.body

            batcher = self._batchers[group.name] = EmbeddingBatcher(
                BatchLimits(limits.max_inputs, limits.max_tokens, limits.max_wait_ms), send
            )
        return batcher

    async def run_batched(self, ex: Exchange, body: bytes) -> ASGIApp:
        """Answer an embeddings request through its group's batcher."""
        metrics = self.metrics
        in_flight = metrics.child(metrics.in_flight, ex.group.name)
        in_flight.inc()
        try:
            data = await self.batcher_for(ex.group).submit(body)
        except BaseException as exc:
            self._failed(ex, exc, "batch")
            raise
        finally:
            in_flight.dec()
        total = time.perf_counter() - ex.started
        metrics.record_request(ex.group.name, "batch", ex.endpoint, 200, total)
        usage = usage_of(data)
        if usage is not None:
            metrics.record_tokens(ex.group.name, "batch", usage.prompt, 0)
        if ex.store is not None:
            ex.store.body(data)
        headers = {
            "x-request-id": ex.request_id,
            "x-gateway-backend": "batch",
            **(ex.headers or {}),
        }
        return RawResponse(data, 200, headers)

    # DispatchObserver: routing decisions and retries, counted.
    def routed(self, group: ModelGroup, backend: Backend, reason: str) -> None:
        m = self.metrics
        m.child(m.routing_decisions, group.name, group.settings.routing.strategy, reason).inc()

    def retried(self, group: ModelGroup, backend: Backend) -> None:
        m = self.metrics
        m.child(m.retries, group.name, backend.name).inc()

    def _outcome(self, group: ModelGroup, backend: Backend, error: GatewayError | None) -> None:
        m = self.metrics
        state = {"closed": 0, "half_open": 1, "open": 2}[backend.breaker]
        m.child(m.breaker_state, group.name, backend.name).set(state)
        m.child(m.backend_in_flight, group.name, backend.name).set(backend.in_flight)
        if error is not None:
            kind = type(error).__name__
            m.child(m.backend_errors, group.name, backend.name, kind).inc()

    async def _dispatch(self, ex: Exchange) -> Dispatched | OpenStream:
        """Dispatch to the exchange's group, then to its fallback groups while they apply.

        Fallbacks: ``fallbacks`` when the group could not answer (no backend available, or
        retries exhausted on retryable failures); ``context_window_fallbacks`` when an upstream
        said the prompt is too long.
        """
        group = ex.group
        seen = {group.name}
        while True:
            try:
                if ex.stream:
                    return await dispatch_stream(group, ex.route, ex.request_for, self)
                return await dispatch(group, ex.route, ex.request_for, self)
            except GatewayError as exc:
                backend = next((b for b in group.backends if b.name == exc.backend), None)
                if backend is not None:
                    self._outcome(group, backend, exc)
                reason = (
                    "context_window"
                    if is_context_length_error(exc)
                    else "unavailable"
                    if is_retryable(exc) or isinstance(exc, UpstreamUnavailableError)
                    else None
                )
                names = (
                    group.settings.context_window_fallbacks
                    if reason == "context_window"
                    else group.settings.fallbacks
                    if reason
                    else []
                )
                target = next((n for n in names if n not in seen), None)
                if target is None:
                    raise
                seen.add(target)
                self.metrics.child(
                    self.metrics.fallbacks, ex.group.name, target, reason or ""
                ).inc()
                group = self.catalog.resolve(target)

    def _failed(self, ex: Exchange, exc: BaseException, backend: str) -> None:
        """An exchange failed before its answer started: waiters on its cache entry learn of
        it, and a gateway error is counted (under ``backend`` when it names none)."""
        error = exc if isinstance(exc, GatewayError) else None
        if ex.store is not None:
            ex.store.release(error)
        if error is not None:
            self.metrics.record_request(
                ex.group.name,
                error.backend or backend,
                ex.endpoint,
                status_of(error),
                time.perf_counter() - ex.started,
            )

    def rejected(self, endpoint: str, error: GatewayError, started: float) -> None:
        """Count a request rejected before routing (under model ``-``, so 4xx rates show)."""
        self.metrics.record_request(
            "-", "none", endpoint, status_of(error), time.perf_counter() - started
        )

    async def run(
        self,
        ex: Exchange,
        convert_for: ConvertFor | None = None,
        error_event: Callable[[GatewayError], bytes] = openai_error_event,
    ) -> ASGIApp:
        """Dispatch ``ex`` and build the response (body or stream).

        Raises:
            GatewayError: the upstream failed before anything was sent to the client.
        """
        metrics = self.metrics
        in_flight = metrics.child(metrics.in_flight, ex.group.name)
        in_flight.inc()
        try:
            result = await self._dispatch(ex)
        except BaseException as exc:
            in_flight.dec()
            self._failed(ex, exc, "none")
            raise
        if isinstance(result, OpenStream):
            opened = result
            converter = convert_for(opened.backend) if convert_for else None
            overhead = time.perf_counter() - ex.started - opened.upstream_s
            metrics.record_upstream(
                ex.group.name, opened.backend.name, ex.endpoint, opened.upstream_s, overhead
            )
            headers = {
                "x-request-id": ex.request_id,
                "x-gateway-backend": opened.backend.name,
                "x-gateway-overhead-ms": f"{overhead * 1000:.3f}",
                "cache-control": "no-cache",
                **(ex.headers or {}),
            }
            chunks = self._relay(
                opened, ex, in_flight, converter.stream() if converter else None, error_event
            )
            if ex.store is None:
                return EventStream(chunks, headers)
            # A cacheable stream is read by its flight, so that identical requests arriving
            # meanwhile can follow it live; this client is its first subscriber.
            ex.store.flight.pump(chunks)
            return EventStream(ex.store.flight.subscribe(ex.store.keep_usage), headers)
        out = result
        self._outcome(ex.group, out.backend, None)
        in_flight.dec()
        total = time.perf_counter() - ex.started
        backend = out.backend.name
        metrics.record_upstream(
            ex.group.name, backend, ex.endpoint, out.upstream_s, total - out.upstream_s
        )
        metrics.record_request(ex.group.name, backend, ex.endpoint, out.response.status, total)
        usage = usage_of(out.response.body)
        if usage is not None:
            metrics.record_tokens(ex.group.name, backend, usage.prompt, usage.completion)
        body = out.response.body
        if ex.store is not None:
            if out.response.status == 200:
                ex.store.body(body)
            else:
                ex.store.release()
        if convert_for is not None and (converter := convert_for(out.backend)) is not None:
            body = converter.body(body)
        headers = {
            "x-request-id": ex.request_id,
            "x-gateway-backend": backend,
            "x-gateway-overhead-ms": f"{(total - out.upstream_s) * 1000:.3f}",
            **(ex.headers or {}),
        }
        return RawResponse(body, out.response.status, headers)

    async def _relay(
        self,
        opened: OpenStream,
        ex: Exchange,
        in_flight: Any,
        converter: StreamConverter | None,
        error_event: Callable[[GatewayError], bytes],
    ) -> AsyncIterator[bytes]:
        """Forward upstream chunks as they come; close the upstream however the stream ends."""
        metrics = self.metrics
        model, backend = ex.group.name, opened.backend.name
        status = 499  # stays so if the client goes away first
        previous = last = b""
        first = True
        recorder = ex.store.assembler() if ex.store is not None else None
        try:
            async for chunk in opened.chunks():
                if recorder is not None:
                    recorder.feed(chunk)
                if first:
                    first = False
                    ttft = time.perf_counter() - ex.started
                    metrics.child(metrics.ttft_seconds, model, backend).observe(ttft)
                    opened.backend.health.ttft.observe(ttft)
                    opened.backend.health.latency.observe(ttft)
                previous, last = last, chunk
                out = converter.feed(chunk) if converter else chunk
                if out:
                    yield out
            if converter and (tail := converter.finish()):
                yield tail
            status = 200
            opened.backend.health.on_success()
            if recorder is not None and ex.store is not None and (done := recorder.result()):
                ex.store.body(done)
        except GatewayError as exc:
            # Bytes already reached the client: the failure becomes an error event that the
            # SDKs raise, instead of a silent truncation.
            status = status_of(exc)
            opened.backend.health.on_failure()
            if ex.store is not None:
                ex.store.release(exc)  # plain followers get the same error
            yield error_event(exc)
        finally:
            if ex.store is not None:
                ex.store.release()  # no-op when the answer was stored
            with anyio.CancelScope(shield=True):
                await opened.aclose()
            in_flight.dec()
            metrics.record_request(
                model, backend, ex.endpoint, status, time.perf_counter() - ex.started
            )
            prompt, completion = usage_in_stream_tail(previous + last)
            metrics.record_tokens(model, backend, prompt, completion)
