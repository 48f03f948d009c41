"""An agent's model calls, made in process through the gateway's own pipeline.

Each call is a *step*: a :class:`~gateway.pipeline.context.RequestContext` for the chat dialect,
made as if the caller had sent it (their principal, headers, a request id ``<run id>.<n>``)
and served by :meth:`Pipeline.admit` and :meth:`Pipeline.answer`: the model group's
guardrails, cache, cost policy, limits, budget, routing, retries and fallbacks apply, and the
step is accounted as its own usage record (with the run's id, the agent and the step's number).
No HTTP: the answer is read straight from the ASGI response the pipeline would have sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from gateway.agents.base import (
    DEFAULT_STEP,
    RunLimits,
    RunUsage,
    StepOptions,
    StepResult,
)
from gateway.agents.toolcalls import ToolCallAssembler, calls_in_message
from gateway.codec import decode, encode
from gateway.errors import GatewayError, InvalidRequestError, UpstreamError, UpstreamTimeoutError
from gateway.pipeline.context import Dialect, RequestContext, StepInfo
from gateway.routes.responses import EventStream, RawResponse
from gateway.sse import SSEParser

# Runs nested in runs (a workflow's agents, an agent calling an agent) stop here: a cycle the
# configuration check missed cannot recurse without bound.
MAX_DEPTH = 4


class StepPipeline(Protocol):
    """What a step needs of :class:`~gateway.pipeline.pipeline.Pipeline`."""

    async def admit(self, ctx: RequestContext) -> None: ...

    async def answer(self, ctx: RequestContext) -> Any: ...


class Run:
    """One run's identity, limits and running totals, shared by its model client and session.

    Attributes:
        name: the agent (or workflow) running.
        outer: the request being answered.
        limits: the run's limits.
        usage: what it has used so far.
        on_step: told ``(agent, model, route)`` of every step made (metrics).
    """

    __slots__ = ("limits", "name", "on_step", "outer", "usage")

    def __init__(
        self,
        name: str,
        outer: RequestContext,
        limits: RunLimits,
        on_step: Callable[[str, str, str | None], None] | None = None,
    ) -> None:
        self.name = name
        self.outer = outer
        self.limits = limits
        self.usage = RunUsage()
        self.on_step = on_step

    @property
    def depth(self) -> int:
        step = self.outer.step
        return 1 if step is None else step.depth + 1


class PipelineModelClient:
    """Satisfies :class:`gateway.agents.base.ModelClient` for one :class:`Run`.

    Args:
        pipeline: the app's pipeline.
        dialect: the chat dialect (what steps speak).
        run: the run the steps belong to.
    """

    __slots__ = ("_dialect", "_pipeline", "_run")

    def __init__(self, pipeline: StepPipeline, dialect: Dialect, run: Run) -> None:
        self._pipeline = pipeline
        self._dialect = dialect
        self._run = run

    async def _context(
        self, request: Mapping[str, Any], options: StepOptions, stream: bool
    ) -> RequestContext:
        run = self._run
        if time.monotonic() >= run.limits.deadline:
            raise UpstreamTimeoutError(
                f"`{run.name}` ran out of time before its next model call.", code="run_timeout"
            )
        if run.depth > MAX_DEPTH:
            raise InvalidRequestError(
                f"`{run.name}` nests runs more than {MAX_DEPTH} deep.", code="run_too_deep"
            )
        outer = run.outer
        number = run.usage.steps + 1
        body = {k: v for k, v in request.items() if k not in ("store", "stream_options")}
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}
        ctx = RequestContext(
            self._dialect, outer.headers, f"{outer.request_id}.{number}", time.perf_counter()
        )
        ctx.principal = outer.principal
        ctx.body = encode(body)
        ctx.payload = self._dialect.decode(ctx.body)
        ctx.step = StepInfo(
            agent=run.name,
            parent_id=outer.request_id,
            number=number,
            depth=run.depth,
            route=options.route,
            local_only=options.local_only,
            cap=options.cap,
        )
        await self._pipeline.admit(ctx)
        ctx.deadline = min(ctx.deadline, run.limits.deadline)
        if run.on_step is not None:
            run.on_step(run.name, ctx.model_group.name, options.route)
        return ctx

    async def chat(
        self, request: Mapping[str, Any], options: StepOptions = DEFAULT_STEP
    ) -> StepResult:
        ctx = await self._context(request, options, stream=False)
        started = time.perf_counter()
        answer = await self._pipeline.answer(ctx)
        if isinstance(answer, EventStream):  # a cache replay of a streamed answer
            return await _drain(PipelineStepStream(ctx, answer, started, self._run, options))
        assert isinstance(answer, RawResponse)
        if answer.status != 200:
            raise UpstreamError(f"The model call failed with status {answer.status}.")
        body = decode(answer.body)
        result = _result_of(body, ctx, answer.header(b"x-gateway-backend"), options)
        self._run.usage.add(result.usage)
        return result

    def stream(
        self, request: Mapping[str, Any], options: StepOptions = DEFAULT_STEP
    ) -> PipelineStepStream:
        return PipelineStepStream.opening(self, request, options)


def _result_of(
    body: Mapping[str, Any],
    ctx: RequestContext,
    backend: bytes | None,
    options: StepOptions,
) -> StepResult:
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], Mapping) else {}
    message = dict(choice.get("message") or {"role": "assistant", "content": ""})
    message.setdefault("role", "assistant")
    return StepResult(
        message=message,
        finish_reason=str(choice.get("finish_reason") or "stop"),
        tool_calls=calls_in_message(message, ctx.request_id),
        model=ctx.model_group.name,
        backend=backend.decode("latin-1") if backend else (ctx.served_from or "-"),
        # The model's time is the wait on the upstream alone (the step's own pipeline work is
        # the gateway's); a cache hit waited on nothing.
        usage=_usage_of(ctx, body.get("usage"), ctx.upstream_s),
        route=options.route,
    )


def _usage_of(ctx: RequestContext, usage: Any, seconds: float) -> RunUsage:
    """A step's usage: a nested run's own totals, or the model's counts, the step's cost and
    ``seconds`` of model time (a streamed step's is its whole duration: the relay's work per
    chunk is interleaved with the model's)."""
    nested = ctx.run_usage
    if nested is not None:
        return nested
    counts = usage if isinstance(usage, Mapping) else {}
    details = counts.get("prompt_tokens_details")
    cached = details.get("cached_tokens", 0) if isinstance(details, Mapping) else 0
    return RunUsage(
        steps=1,
        prompt_tokens=int(counts.get("prompt_tokens") or 0),
        completion_tokens=int(counts.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
        cost_nanos=ctx.cost_nanos,
        model_s=seconds,
    )


async def _drain(stream: PipelineStepStream) -> StepResult:
    async for _ in stream:
        pass
    return stream.result


class PipelineStepStream:
    """A streamed step (satisfies :class:`gateway.agents.base.StepStream`): the chunks as the
    model sends them, the step reassembled from them at the end."""

    __slots__ = (
        "_answer",
        "_client",
        "_ctx",
        "_options",
        "_request",
        "_result",
        "_run",
        "_started",
    )

    def __init__(
        self,
        ctx: RequestContext | None,
        answer: EventStream | None,
        started: float,
        run: Run,
        options: StepOptions,
    ) -> None:
        self._ctx = ctx
        self._answer = answer
        self._started = started
        self._run = run
        self._options = options
        self._result: StepResult | None = None
        self._client: PipelineModelClient | None = None
        self._request: Mapping[str, Any] = {}

    @classmethod
    def opening(
        cls, client: PipelineModelClient, request: Mapping[str, Any], options: StepOptions
    ) -> PipelineStepStream:
        """A stream that opens its step when first iterated."""
        stream = cls(None, None, 0.0, client._run, options)
        stream._client = client
        stream._request = request
        return stream

    @property
    def result(self) -> StepResult:
        if self._result is None:
            raise RuntimeError("the step has not ended")
        return self._result

    def __aiter__(self) -> AsyncIterator[Mapping[str, Any]]:
        return self._chunks()

    async def aclose(self) -> None:
        answer = self._answer
        if answer is not None:
            chunks = answer.chunks
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()

    async def _open(self) -> tuple[RequestContext, EventStream | RawResponse]:
        client = self._client
        if self._ctx is not None and self._answer is not None:
            return self._ctx, self._answer
        assert client is not None
        ctx = await client._context(self._request, self._options, stream=True)
        self._started = time.perf_counter()
        answer = await client._pipeline.answer(ctx)
        self._ctx = ctx
        return ctx, answer

    async def _chunks(self) -> AsyncGenerator[Mapping[str, Any], None]:
        ctx, answer = await self._open()
        if isinstance(answer, RawResponse):  # a cached whole answer for a streamed request
            body = decode(answer.body)
            result = _result_of(body, ctx, answer.header(b"x-gateway-backend"), self._options)
            self._finish(result)
            return
        self._answer = answer
        parser = SSEParser()
        assembler = ToolCallAssembler(ctx.request_id)
        content: list[str] = []
        finish = "stop"
        usage: Any = None
        try:
            async for data in answer.chunks:
                for event in parser.feed(data):
                    if not event.data.startswith(b"{"):
                        continue  # [DONE]
                    chunk = decode(event.data)
                    if "error" in chunk and "choices" not in chunk:
                        raise _stream_error(chunk["error"])
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if text := delta.get("content"):
                            content.append(text)
                        if calls := delta.get("tool_calls"):
                            assembler.feed(calls)
                        if reason := choice.get("finish_reason"):
                            finish = reason
                    yield chunk
        finally:
            chunks = answer.chunks
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()  # accounts the step (its usage record, its cost)
        calls = assembler.calls()
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
        if calls:
            message["tool_calls"] = [c.message_part() for c in calls]
        backend = answer.header(b"x-gateway-backend")
        self._finish(
            StepResult(
                message=message,
                finish_reason=finish,
                tool_calls=calls,
                model=ctx.model_group.name,
                backend=backend.decode("latin-1") if backend else "-",
                usage=_usage_of(ctx, usage, time.perf_counter() - self._started),
                route=self._options.route,
            )
        )

    def _finish(self, result: StepResult) -> None:
        self._result = result
        self._run.usage.add(result.usage)


def _stream_error(error: Any) -> GatewayError:
    """The error event a step's stream ended with, raised again for the run."""
    message = error.get("message") if isinstance(error, Mapping) else None
    code = error.get("code") if isinstance(error, Mapping) else None
    return UpstreamError(
        str(message or "The model's stream failed."),
        code=str(code) if isinstance(code, str) else None,
    )
