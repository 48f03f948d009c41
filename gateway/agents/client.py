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
from gateway.closing import close_chunks
from gateway.codec import decode, encode
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
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

    __slots__ = ("_issued", "limits", "name", "on_step", "outer", "usage")

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
        self._issued = 0

    def next_number(self) -> int:
        """The number of the step about to be made (from 1): taken when the step starts, so
        that steps started together (a workflow's parallel branches) never share a number, a
        request id, or a usage record."""
        self._issued += 1
        return self._issued

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

    @property
    def pipeline(self) -> StepPipeline:
        return self._pipeline

    async def step_context(
        self, request: Mapping[str, Any], options: StepOptions, stream: bool
    ) -> RequestContext:
        """The context of one step, admitted (model resolved, request guardrails run).

        Raises:
            GatewayError: the run is out of time or nested too deep, or admission refused it.
        """
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
        number = run.next_number()
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
        if outer.trace is not None:
            ctx.trace = outer.trace.step(ctx.step)
        await self._pipeline.admit(ctx)
        ctx.deadline = min(ctx.deadline, run.limits.deadline)
        if run.on_step is not None:
            run.on_step(run.name, ctx.model_group.name, options.route)
        return ctx

    async def chat(
        self, request: Mapping[str, Any], options: StepOptions = DEFAULT_STEP
    ) -> StepResult:
        ctx = await self.step_context(request, options, stream=False)
        usage: RunUsage | None = None
        try:
            answer = await self._pipeline.answer(ctx)
            assert isinstance(answer, RawResponse)  # a request that does not stream
            body = decode(_answered(answer))
            result = _result_of(body, ctx, answer.header(b"x-gateway-backend"), options)
            usage = result.usage
            return result
        finally:
            # Once, however the step ended: a failed step was charged too.
            self._run.usage.add(usage if usage is not None else _usage_of(ctx, None, 0.0))

    def stream(
        self, request: Mapping[str, Any], options: StepOptions = DEFAULT_STEP
    ) -> PipelineStepStream:
        return PipelineStepStream(self, self._run, request, options)


def _answered(answer: RawResponse) -> bytes:
    """The body of a successful answer.

    Raises:
        UpstreamStatusError: the pipeline answered an error (an identical request's failure,
            shared with this one), with its status and message.
    """
    if answer.status == 200:
        return answer.body
    try:
        error = decode(answer.body).get("error")
    except Exception:  # noqa: BLE001 - an unreadable error body gets the generic message
        error = None
    error = error if isinstance(error, Mapping) else {}
    code = error.get("code")
    raise UpstreamStatusError(
        answer.status,
        str(error.get("message") or "The model call failed."),
        code=code if isinstance(code, str) else None,
    )


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


class _Assembly:
    """A streamed step's answer, put together from its chunks."""

    __slots__ = ("calls", "content", "finish", "usage")

    def __init__(self, seed: str) -> None:
        self.calls = ToolCallAssembler(seed)
        self.content: list[str] = []
        self.finish = "stop"
        self.usage: Any = None

    def take(self, chunk: Mapping[str, Any]) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if text := delta.get("content"):
                self.content.append(text)
            if calls := delta.get("tool_calls"):
                self.calls.feed(calls)
            if reason := choice.get("finish_reason"):
                self.finish = reason

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if calls := self.calls.calls():
            message["tool_calls"] = [c.message_part() for c in calls]
        return message


class PipelineStepStream:
    """A streamed step (satisfies :class:`gateway.agents.base.StepStream`): the chunks as the
    model sends them, the step reassembled from them at the end. The step starts when the
    stream is first iterated."""

    __slots__ = ("_client", "_iterator", "_options", "_request", "_result", "_run")

    def __init__(
        self,
        client: PipelineModelClient,
        run: Run,
        request: Mapping[str, Any],
        options: StepOptions,
    ) -> None:
        self._client = client
        self._run = run
        self._request = request
        self._options = options
        self._result: StepResult | None = None
        self._iterator: AsyncGenerator[Mapping[str, Any], None] | None = None

    @property
    def result(self) -> StepResult:
        if self._result is None:
            raise RuntimeError("the step has not ended")
        return self._result

    def __aiter__(self) -> AsyncIterator[Mapping[str, Any]]:
        if self._iterator is None:
            self._iterator = self._chunks()
        return self._iterator

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()

    async def _chunks(self) -> AsyncGenerator[Mapping[str, Any], None]:
        ctx = await self._client.step_context(self._request, self._options, stream=True)
        started = time.perf_counter()
        assembly = _Assembly(ctx.request_id)
        ended = False
        try:
            answer = await self._client.pipeline.answer(ctx)
            if isinstance(answer, RawResponse):  # a whole answer: a cache hit, a shared flight
                source: AsyncIterator[bytes] = _once(_answered(answer))
            else:
                assert isinstance(answer, EventStream)
                source = answer.chunks
            backend = answer.header(b"x-gateway-backend")
            parser = SSEParser()
            try:
                async for data in source:
                    for event in parser.feed(data):
                        if not event.data.startswith(b"{"):
                            continue  # [DONE]
                        chunk = decode(event.data)
                        if "error" in chunk and "choices" not in chunk:
                            raise _stream_error(chunk["error"])
                        assembly.take(chunk)
                        yield chunk
            finally:
                await close_chunks(source)  # accounts the step (its usage record, its cost)
            ended = True
        finally:
            seconds = time.perf_counter() - started
            usage = _usage_of(ctx, assembly.usage, seconds)
            self._run.usage.add(usage)  # once, however the step ended
        if ended:
            message = assembly.message()
            self._result = StepResult(
                message=message,
                finish_reason=assembly.finish,
                tool_calls=assembly.calls.calls(),
                model=ctx.model_group.name,
                backend=backend.decode("latin-1") if backend else (ctx.served_from or "-"),
                usage=usage,
                route=self._options.route,
            )


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


def _stream_error(error: Any) -> GatewayError:
    """The error event a step's stream ended with, raised again for the run."""
    message = error.get("message") if isinstance(error, Mapping) else None
    code = error.get("code") if isinstance(error, Mapping) else None
    return UpstreamError(
        str(message or "The model's stream failed."),
        code=str(code) if isinstance(code, str) else None,
    )
