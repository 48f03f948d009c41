"""The request pipeline: every inference request, whatever its API, top to bottom, here.

Stages, in order (those in brackets arrive with the next features; their seams are marked
``# seam:`` in :meth:`Pipeline.answer`, where they go):

1. **authenticate**: the caller's :class:`~gateway.identity.Principal`;
2. **decode and validate**: the body read (bounded) and decoded once, by the dialect;
3. **resolve the model**: the model group, which the caller must be allowed to use;
4. **guardrails, pre**: check or rewrite the request (:mod:`gateway.pipeline.guarding`);
5. **cache and coalescing**: answer from the cache or an identical request in flight;
6. (**cost policy, limits and budget reservation**): one atomic reservation per request;
7. (**admission**): wait in the scheduler's queue while the group is saturated;
8. **dispatch**: route, retry, fall back (or the embedding batcher); for an agent, a workflow
   or a group running server-side tools, its runner (:mod:`gateway.agents.runner`), whose
   model calls come back through :meth:`Pipeline.answer` as steps;
9. **guardrails, post** on bodies and chunks, and **convert** to the client's format;
10. **keep**: answers the client asked to store (``store``) go to the response store, before
    the client sees their end, so a next turn can always find them;
11. **account**: metrics and usage, recorded off the response's path.

A dialect (:class:`~gateway.pipeline.context.Dialect`: OpenAI chat, completions, embeddings,
Responses; Anthropic Messages) says how its requests are decoded, sent, answered and stored;
everything else is the same for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator

import anyio
from litestar.types import ASGIApp

from gateway.auth import Authenticator
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    PermissionDeniedError,
    UpstreamConnectionError,
    status_of,
)
from gateway.pipeline.admitting import wait_for_admission
from gateway.pipeline.batching import EmbeddingBatching
from gateway.pipeline.caching import CacheStage
from gateway.pipeline.context import (
    Converter,
    Dialect,
    RequestContext,
    StepInfo,
    StreamRecorder,
)
from gateway.pipeline.fallback import FallbackPolicy, is_local, require_local
from gateway.pipeline.guarding import (
    COUNTED_ONLY,
    GUARDED_ENDPOINTS,
    Guarding,
    check_request,
    same_guardrails,
)
from gateway.pipeline.limits import check_limits
from gateway.pipeline.streams import relay_stream
from gateway.pipeline.telemetry import InFlight, Telemetry
from gateway.routes.calls import Call, ClientDisconnectedError
from gateway.routes.responses import EventStream, RawResponse
from gateway.routing.backends import ModelGroup
from gateway.routing.dispatch import Dispatched, OpenStream
from gateway.schemas.openai import TokenCounts
from gateway.state import GatewayState
from gateway.stores.base import StoreUnavailableError

log = logging.getLogger("gateway")


class Pipeline:
    """Serves inference requests for one app (see the module docstring)."""

    def __init__(self, state: GatewayState) -> None:
        self._auth: Authenticator = state.auth
        self._catalog = state.catalog
        self._max_body = state.settings.server.max_body_bytes
        self.telemetry = telemetry = Telemetry(state.metrics)
        background = state.background
        self._cache = (
            CacheStage(state.cache, state.coalescer, background.submit, telemetry, self.keep)
            if state.cache is not None
            else None
        )
        self._fallback = FallbackPolicy(state.catalog, telemetry, state.agents.guards)
        self._batching = EmbeddingBatching(telemetry, background.spawn)
        self._store = state.store
        self._governor = state.governance.governor
        agents = state.agents
        self._runners = agents.runners  # agents, workflows, groups running server-side tools
        self._guards = agents.guards  # guardrail chains by model group
        self._admissions = state.admissions  # None: no group schedules
        self._tracer = state.tracing  # None: tracing is off

    async def serve(self, call: Call, dialect: Dialect) -> ASGIApp:
        """Answer one request (a body or a stream).

        Raises:
            GatewayError: the request failed before anything was sent; the caller renders it
                in the dialect's format.
        """
        return await self.answer(await self.intake(call, dialect))

    async def answer(self, ctx: RequestContext) -> ASGIApp:
        """Stages 5 to 11 for a request that passed :meth:`intake` (or :meth:`admit`, for an
        agent's step made in process).

        Raises:
            GatewayError: as :meth:`serve`.
        """
        governor = self._governor
        dialect = ctx.dialect
        try:
            asked = ctx.model_group
            governor.steer(ctx)  # a cost policy may pick another group: before the cache key
            group = ctx.model_group
            step = ctx.step
            if group is not asked and not self._may_reroute(asked, group, step):
                ctx.group = group = asked
                ctx.response_headers.pop("x-gateway-cost-policy", None)
            if step is not None and step.local_only:
                require_local(group)
            runner = self._runners.get(group.name) if self._runners else None
            if runner is not None and (step is None or runner.nests):
                ctx.composite = True
            else:
                runner = None
            if self._cache is not None and dialect.cacheable and group.settings.cache.enabled:
                answer = await self._cache.consult(ctx)
                if answer is not None:
                    self._finish(ctx, ctx.served_status, ctx.served_from or "cache")
                    return answer
            await governor.reserve(ctx)
            if self._admissions is not None and not ctx.composite:
                gate = self._admissions.get(group.name)
                if gate is not None:  # a run holds no slot: it would wait on its own steps
                    try:
                        ctx.admission = await wait_for_admission(ctx, gate)
                    except (asyncio.CancelledError, ClientDisconnectedError) as exc:
                        # the client left while it waited: nobody to answer
                        if ctx.cache_store is not None:
                            ctx.cache_store.release(None)
                        self._finish(ctx, 499, "none", error=exc)
                        raise
        except GatewayError as exc:
            if ctx.cache_store is not None:  # this request led a flight: end it
                ctx.cache_store.release(exc)
            self.telemetry.rejected(ctx, exc)
            self._finish(ctx, status_of(exc), "none", error=exc)
            raise
        if dialect.batchable and group.settings.batching.enabled:
            return await self._batching.answer(ctx, self.account)
        telemetry = self.telemetry
        in_flight = telemetry.in_flight(group)
        try:
            if runner is not None:
                result = await runner.answer(ctx)
            else:
                result = await self._fallback.dispatch(ctx)
        except BaseException as exc:
            in_flight.dec()
            if ctx.cache_store is not None:
                ctx.cache_store.release(exc if isinstance(exc, GatewayError) else None)
            telemetry.failed(ctx, exc, "none")
            self._finish(ctx, _status(exc), _backend_of(exc), error=exc)
            raise
        if isinstance(result, OpenStream):
            return await self._stream(ctx, result, in_flight)
        return await self._body(ctx, result, in_flight)

    def _may_reroute(self, asked: ModelGroup, target: ModelGroup, step: StepInfo | None) -> bool:
        """Whether a cost policy may send a request for ``asked`` to ``target``: not past the
        guardrails ``asked`` has (or to ones it was not checked by), and not off a
        ``local_only`` step's local models. Otherwise the request stays where it was asked."""
        if not same_guardrails(self._guards, asked.name, target.name):
            return False
        return step is None or not step.local_only or is_local(target)

    async def intake(self, call: Call, dialect: Dialect) -> RequestContext:
        """Stages 1 to 4: authenticate, decode and validate, resolve the model, guardrails.

        Raises:
            GatewayError: 401, 400, 413, 404 or 403; counted as a rejected request.
        """
        ctx = RequestContext(dialect, call.headers, call.request_id, time.perf_counter())
        if self._tracer is not None:
            ctx.trace = self._tracer.request(ctx)
        ctx.store = self._store
        ctx.disconnected = call.disconnected
        try:
            ctx.principal = await self._auth.authenticate(ctx.headers)
            ctx.body = await call.body(self._max_body)
            ctx.payload = dialect.decode(ctx.body)
        except GatewayError as exc:
            self.telemetry.rejected(ctx, exc)
            self._finish(ctx, status_of(exc), "none", error=exc)
            raise
        except BaseException as exc:  # the client left mid-body: nothing to account, a span to end
            if (trace := ctx.trace) is not None:
                trace.finish(ctx, 499, "none", 0, 0, exc)
            raise
        await self.admit(ctx)
        return ctx

    async def admit(self, ctx: RequestContext) -> None:
        """Stages 3 and 4 for a decoded request (``ctx.principal`` and ``ctx.payload`` set):
        resolve the model, check what the caller may ask for, guardrails on the request, and
        the dialect's preparation. An agent's step skips the caller's model allow-list: the
        key was allowed the agent, whose configuration chose the models.

        Raises:
            GatewayError: 404, 403 or 400; counted as a rejected request.
        """
        dialect, payload = ctx.dialect, ctx.payload
        try:
            ctx.group = group = self._catalog.resolve(payload.model)
            if ctx.step is None and not ctx.principal.may_use(payload.model):
                raise PermissionDeniedError(
                    f"This API key may not use the model `{payload.model}`.",
                    param="model",
                    code="model_not_allowed",
                )
            if (limits := group.settings.limits) is not None:
                check_limits(limits, payload, payload.model)
            ctx.stream = dialect.streams and bool(payload.stream)
            ctx.deadline = time.monotonic() + group.settings.timeouts.total
            step = ctx.step
            runner = self._runners.get(group.name) if self._runners else None
            if runner is not None and (step is None or runner.nests):
                ctx.chat_only = True  # a run reads chat: Messages and Responses translated
            chain = self._guards.get(group.name) if self._guards else None
            # A step of a group's own server-tools run was checked as the client's request.
            if chain is not None and (step is None or step.agent != group.name):
                if dialect.endpoint not in GUARDED_ENDPOINTS | COUNTED_ONLY:
                    raise InvalidRequestError(
                        f"Model `{group.name}` has guardrails, which check chat, Messages and "
                        f"Responses requests only; `/v1/{dialect.endpoint}` is not served for it.",
                        param="model",
                        code="endpoint_not_guarded",
                    )
                if dialect.endpoint in GUARDED_ENDPOINTS:
                    ctx.guards = Guarding(chain)
                    ctx.chat_only = True  # guardrails read chat: always translate
            await dialect.prepare(ctx)
            if ctx.guards is not None:
                await check_request(ctx, ctx.guards)
        except GatewayError as exc:
            self.telemetry.rejected(ctx, exc)
            self._finish(ctx, status_of(exc), "none", error=exc)
            raise

    async def keep(self, ctx: RequestContext, answer: bytes) -> None:
        """Stage 10: store a successful answer the client asked to keep. A store that fails
        costs the stored copy, not the answer: logged, and the client is answered."""
        try:
            await self._store.put(ctx.principal.namespace, ctx.dialect.record(ctx, answer))
        except StoreUnavailableError as exc:
            log.warning("request %s: the answer was not stored: %s", ctx.request_id, exc)
        except Exception:
            log.exception("request %s: the answer could not be stored", ctx.request_id)

    async def _kept(
        self, ctx: RequestContext, chunks: AsyncGenerator[bytes, None], recorder: StreamRecorder
    ) -> AsyncGenerator[bytes, None]:
        """``chunks``, with the answer stored as soon as it is complete, before the chunk that
        completes it goes out."""
        kept = False
        try:
            async for chunk in chunks:
                if not kept:
                    recorder.feed(chunk)
                    if recorder.complete and (answer := recorder.result()) is not None:
                        kept = True
                        await self.keep(ctx, answer)
                yield chunk
        finally:
            await chunks.aclose()

    def account(
        self, ctx: RequestContext, backend: str, status: int, usage: TokenCounts | None
    ) -> None:
        """Stage 11: what a finished request used: token metrics, then the governor settles its
        reservation and records its usage (off the response's path), exactly once."""
        if usage is None:
            self._finish(ctx, status, backend)
            return
        prompt, completion = usage.prompt, usage.completion
        if not ctx.composite:  # a run's tokens are its steps', counted there
            self.telemetry.tokens(ctx, backend, prompt, completion)
        self._finish(ctx, status, backend, prompt, completion, usage.cached)

    def _finish(
        self,
        ctx: RequestContext,
        status: int,
        backend: str,
        prompt: int | None = None,
        completion: int | None = None,
        cached: int = 0,
        *,
        error: BaseException | None = None,
    ) -> None:
        """The end of every request, exactly once in effect: its admission released (the next
        waiter may go; with what it used, else its estimate), then the governor's accounting,
        then the trace's spans end (with the cost the accounting found). Each step runs even
        if an earlier one raised (a scheduler plugin's bug must not lose the usage)."""
        try:
            if (admission := ctx.admission) is not None:
                admission.release(prompt, completion)
        finally:
            try:
                self._governor.finish(
                    ctx, status, backend, prompt or 0, completion or 0, cached, error=error
                )
            finally:
                if (trace := ctx.trace) is not None:
                    trace.finish(ctx, status, backend, prompt or 0, completion or 0, error)

    async def _stream(
        self, ctx: RequestContext, opened: OpenStream, in_flight: InFlight
    ) -> ASGIApp:
        """The client's stream for ``opened``. Until :func:`relay_stream` runs, this owns the
        upstream, the slots and the cache entry: if anything fails first, it releases them."""
        backend = opened.backend
        try:
            converter = ctx.dialect.converter(ctx, backend)
            overhead = time.perf_counter() - ctx.started - opened.upstream_s
            self.telemetry.upstream(ctx, backend.name, overhead)
            headers = {
                "x-request-id": ctx.request_id,
                "x-gateway-backend": backend.name,
                "x-gateway-overhead-ms": f"{overhead * 1000:.3f}",
                "cache-control": "no-cache",
                **ctx.response_headers,
            }
            chunks = relay_stream(
                opened,
                ctx,
                converter.stream() if converter else None,
                self.telemetry,
                in_flight,
                self.account,
                ctx.guards,
            )
            if ctx.dialect.keeps(ctx):
                chunks = self._kept(ctx, chunks, ctx.dialect.recorder(ctx))
            store = ctx.cache_store
            if store is None:
                return EventStream(chunks, headers)
            # A cacheable stream is read by its flight, so that identical requests arriving
            # meanwhile can follow it live; this client is its first subscriber.
            store.flight.pump(chunks)
            return EventStream(store.flight.subscribe(store.keep_usage), headers)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await opened.aclose()
            in_flight.dec()
            if ctx.cache_store is not None:
                ctx.cache_store.release(exc if isinstance(exc, GatewayError) else None)
            self.telemetry.failed(ctx, exc, backend.name)
            self._finish(ctx, _status(exc), backend.name, error=exc)
            raise

    async def _body(self, ctx: RequestContext, out: Dispatched, in_flight: InFlight) -> ASGIApp:
        in_flight.dec()
        backend = out.backend.name
        body, status = out.response.body, out.response.status
        store = ctx.cache_store
        converter = ctx.dialect.converter(ctx, out.backend)
        try:
            if (guards := ctx.guards) is not None and status == 200 and guards.context:
                body = await guards.chain.check_response(guards.context, body)
            if converter is not None:
                body = _converted(converter, body, backend)
        except GatewayError as exc:
            if store is not None:
                store.release(exc)
            self.telemetry.failed(ctx, exc, backend)
            self._finish(ctx, status_of(exc), backend, error=exc)
            raise
        total, usage = self.telemetry.body_answered(ctx, out.backend, status, out.response.body)
        if (trace := ctx.trace) is not None:
            trace.answered(out.response.body)
        self.account(ctx, backend, status, usage)
        if store is not None:  # entries are kept in the client's format
            if status == 200:
                store.save(body)
            else:
                store.release()
        if status == 200 and ctx.dialect.keeps(ctx):
            await self.keep(ctx, body)
        headers = {
            "x-request-id": ctx.request_id,
            "x-gateway-backend": backend,
            "x-gateway-overhead-ms": f"{(total - out.upstream_s) * 1000:.3f}",
            **ctx.response_headers,
        }
        return RawResponse(body, status, headers)


def _status(error: BaseException) -> int:
    """The status a client got for ``error`` (499 when it went away: a cancellation)."""
    return status_of(error) if isinstance(error, GatewayError) else 499


def _backend_of(error: BaseException) -> str:
    return (error.backend if isinstance(error, GatewayError) else None) or "none"


def _converted(converter: Converter, body: bytes, backend: str) -> bytes:
    """``body`` in the client's format.

    Raises:
        UpstreamConnectionError: the backend's answer could not be read (502: the upstream's
            fault, not the client's, and never a 500).
    """
    try:
        return converter.body(body)
    except Exception as exc:  # noqa: BLE001 - any unreadable answer is the upstream's fault
        raise UpstreamConnectionError(
            f"The upstream `{backend}` answered a body the gateway could not read: "
            f"{type(exc).__name__}."
        ) from None
