"""Serving a run as a model: the runner of an agent, a workflow, or a group's server-side tools.

The pipeline hands a request for such a model to :meth:`AgentRunner.answer` where it would
dispatch to a backend. The runner makes the run's session (its model client, tools, limits),
runs the agent, and answers in OpenAI chat format, which the dialect converts for Messages and
Responses clients like any backend's answer:

- a body: a ``chat.completion`` whose ``usage`` sums every step, with an ``agent`` extension
  field (name, steps, tool calls, ``stop_reason``, cost) and the ``x-gateway-agent`` header;
- a stream: the answer's deltas as chunks as the model writes them; tool activity as SSE comment
  lines (``: tool_call {...}``, ``: tool_result {...}``, ``: step {...}``, ``: agent {...}`` at
  the end), which every SDK skips; the usage chunk (when asked for) sums every step.

``upstream_s`` of the answer is the run's model and tool time, so the gateway's overhead header
and metrics show the gateway's own time over the whole run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from gateway.agents.base import (
    Agent,
    AgentAnswer,
    AgentEvent,
    DeltaEvent,
    DoneEvent,
    RunLimits,
    RunUsage,
    StepEvent,
    ToolCall,
    ToolCallEvent,
    ToolResultEvent,
)
from gateway.agents.client import PipelineModelClient, Run, StepPipeline
from gateway.agents.metrics import AgentMetrics
from gateway.closing import close_chunks
from gateway.codec import decode, encode
from gateway.errors import GatewayError, UpstreamError
from gateway.pipeline.context import Dialect, RequestContext
from gateway.providers.base import UpstreamResponse
from gateway.routing.backends import Backend
from gateway.routing.dispatch import Dispatched, OpenStream
from gateway.settings_agents import ToolUse
from gateway.tools.base import HttpClient, ToolContext
from gateway.tools.toolbox import OfferedTool, RunToolBox, ToolCatalog

log = logging.getLogger("gateway.agents")

_PREVIEW = 500  # characters of a call's arguments or result shown in a stream's comment line


class RunSession:
    """Satisfies :class:`gateway.agents.base.AgentSession` for one run."""

    __slots__ = ("_models", "_run", "_tools")

    def __init__(self, run: Run, models: PipelineModelClient, tools: RunToolBox) -> None:
        self._run = run
        self._models = models
        self._tools = tools

    @property
    def name(self) -> str:
        return self._run.name

    @property
    def principal(self) -> Any:
        return self._run.outer.principal

    @property
    def request_id(self) -> str:
        return self._run.outer.request_id

    @property
    def models(self) -> PipelineModelClient:
        return self._models

    @property
    def tools(self) -> RunToolBox:
        return self._tools

    @property
    def limits(self) -> RunLimits:
        return self._run.limits

    @property
    def usage(self) -> RunUsage:
        return self._run.usage


class RunSpec:
    """The limits and tools one runner's runs get.

    Attributes:
        max_steps / max_seconds / max_cost_usd / max_tokens: the run's own limits (None:
            none, or the group's total timeout for seconds).
        tools: tools offered, resolved when the gateway was built.
        source_tools: tools of tool sources, resolved per run.
        http: outbound HTTP under the runner's network policy.
        seal_key: the secret approvals are sealed with (``RunToolBox``).
    """

    __slots__ = (
        "http",
        "max_cost_usd",
        "max_seconds",
        "max_steps",
        "max_tokens",
        "seal_key",
        "source_tools",
        "specs",
        "tools",
    )

    def __init__(
        self,
        *,
        max_steps: int,
        max_seconds: float | None,
        max_cost_usd: float | None,
        max_tokens: int | None,
        tools: list[OfferedTool],
        source_tools: list[ToolUse],
        http: HttpClient,
        seal_key: bytes = b"",
    ) -> None:
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.max_cost_usd = max_cost_usd
        self.max_tokens = max_tokens
        self.tools = tools
        self.source_tools = source_tools
        self.http = http
        self.specs = [t.spec() for t in tools]
        self.seal_key = seal_key


class AgentRunner:
    """Answers the requests of one agent, workflow, or server-tools group (see the module
    docstring).

    Args:
        name: the model name it serves.
        agent: what runs.
        spec: its limits and tools.
        backend: the backend its answers are reported from (``agent:<name>``).
        catalog: the tool catalog (for tools of tool sources).
        metrics: agent metrics.
        nests: whether a step of another run may call it (agents, workflows); a group's
            server-side tools apply to client requests only (its steps go to its backends).
    """

    def __init__(
        self,
        name: str,
        agent: Agent,
        spec: RunSpec,
        backend: Backend,
        catalog: ToolCatalog,
        metrics: AgentMetrics,
        *,
        nests: bool,
    ) -> None:
        self.name = name
        self.agent = agent
        self.spec = spec
        self.backend = backend
        self.nests = nests
        self._catalog = catalog
        self._metrics = metrics
        self._pipeline: StepPipeline | None = None
        self._dialect: Dialect | None = None

    def bind(self, pipeline: StepPipeline, dialect: Dialect) -> None:
        """Make steps through ``pipeline`` in ``dialect`` (the chat dialect)."""
        self._pipeline = pipeline
        self._dialect = dialect

    def _limits(self, ctx: RequestContext) -> RunLimits:
        spec = self.spec
        now = time.monotonic()
        deadline = ctx.deadline if spec.max_seconds is None else now + spec.max_seconds
        limits = RunLimits(
            max_steps=spec.max_steps,
            deadline=min(deadline, ctx.deadline),
            max_cost_nanos=None if spec.max_cost_usd is None else round(spec.max_cost_usd * 1e9),
            max_tokens=spec.max_tokens,
        )
        return limits.capped_by(ctx.step.cap if ctx.step is not None else None)

    async def _session(self, ctx: RequestContext) -> RunSession:
        assert self._pipeline is not None, "runner not bound"
        assert self._dialect is not None, "runner not bound"
        metrics = self._metrics
        run = Run(self.name, ctx, self._limits(ctx), on_step=metrics.step)
        spec = self.spec
        offered, specs = spec.tools, spec.specs
        if spec.source_tools:
            offered = [*offered, *await self._catalog.offer_sources(spec.source_tools)]
            specs = [t.spec() for t in offered]
        name, http, principal = self.name, spec.http, ctx.principal

        def context_for(call: ToolCall, deadline: float) -> ToolContext:
            return ToolContext(
                principal=principal,
                deadline=deadline,
                request_id=ctx.request_id,
                call_id=call.id,
                agent=name,
                log=logging.LoggerAdapter(
                    log, {"request_id": ctx.request_id, "tool": call.name, "agent": name}
                ),
                http=http,
            )

        trace = ctx.trace

        def observe(tool: str, outcome: str, seconds: float) -> None:
            metrics.tool_call(name, tool, outcome, seconds)
            if trace is not None:
                trace.tool_called(tool, outcome, seconds)

        tools = RunToolBox(offered, context_for, run.limits.deadline, specs, observe, spec.seal_key)
        return RunSession(run, PipelineModelClient(self._pipeline, self._dialect, run), tools)

    def _request_of(self, ctx: RequestContext) -> dict[str, Any]:
        """The client's request as a chat body (translated for Messages and Responses)."""
        request = ctx.dialect.upstream_request(ctx, self.backend)
        body: dict[str, Any] = decode(request.body)
        return body

    async def answer(self, ctx: RequestContext) -> Dispatched | OpenStream:
        """Run the agent for ``ctx``: a whole answer, or an open stream of one.

        A stream opens once its run has got going (the request checked, the first step made
        or under way), so that a request the run refuses gets its error status, not a 200
        whose stream holds the error.

        Raises:
            GatewayError: the run failed before its answer started (an unexpected failure of
                the agent is a 502, logged).
        """
        request = self._request_of(ctx)
        if ctx.trace is not None:
            ctx.trace.run_started(self.name)
        session = await self._session(ctx)
        started = time.perf_counter()
        if ctx.stream:
            events = self.agent.stream(request, session)
            try:
                early = await _first_events(events)
            except BaseException as exc:
                await close_chunks(events)
                self.ended(ctx, session, started, None)
                raise _as_gateway_error(exc, self.name) from exc
            self.backend.in_flight += 1
            stream = _RunStream(self, ctx, request, session, events, early, started)
            return OpenStream(stream, self.backend, 0.0)
        try:
            answer = await self.agent.run(request, session)
        except BaseException as exc:
            self.ended(ctx, session, started, None)
            raise _as_gateway_error(exc, self.name) from exc
        self.ended(ctx, session, started, answer)
        body = _completion(ctx, answer, session.usage, include_agent=True)
        ctx.response_headers["x-gateway-agent"] = _summary(answer, session.usage)
        usage = session.usage
        ctx.upstream_s = usage.model_s + usage.tool_s  # the gateway's share is the rest
        return Dispatched(UpstreamResponse(200, body), self.backend, ctx.upstream_s)

    def ended(
        self,
        ctx: RequestContext,
        session: RunSession,
        started: float,
        answer: AgentAnswer | None,
    ) -> None:
        """Hand the run's totals to the request (an enclosing run folds them in); count it
        (``error`` when it failed), and end its span."""
        usage = session.usage
        ctx.run_usage = usage
        ctx.cost_nanos = usage.cost_nanos
        overhead = time.perf_counter() - started - usage.model_s - usage.tool_s
        reason = answer.stop_reason if answer is not None else "error"
        self._metrics.run_ended(self.name, reason, usage.steps, overhead)
        if ctx.trace is not None:
            ctx.trace.run_ended(usage, reason)


async def _first_events(events: AsyncIterator[AgentEvent]) -> list[AgentEvent]:
    """The events up to the first that is not the start of a step (a delta, a tool call, the
    end): by then the request has been checked and the first step has answered."""
    early: list[AgentEvent] = []
    async for event in events:
        early.append(event)
        if not isinstance(event, StepEvent):
            break
    return early


def _as_gateway_error(error: BaseException, name: str) -> BaseException:
    """``error`` as the client should get it: gateway errors and cancellations as they are,
    anything else (a bug in an agent) a 502, logged."""
    if isinstance(error, GatewayError) or not isinstance(error, Exception):
        return error
    log.error("`%s` failed", name, exc_info=error)
    return UpstreamError(f"`{name}` failed: {type(error).__name__}.", code="agent_failed")


class _RunStream:
    """A streamed run as an upstream stream of chat SSE bytes (see the module docstring)."""

    __slots__ = (
        "_early",
        "_events",
        "_iterator",
        "_runner",
        "_started",
        "ctx",
        "request",
        "session",
    )

    def __init__(
        self,
        runner: AgentRunner,
        ctx: RequestContext,
        request: dict[str, Any],
        session: RunSession,
        events: AsyncIterator[AgentEvent],
        early: list[AgentEvent],
        started: float,
    ) -> None:
        self._runner = runner
        self.ctx = ctx
        self.request = request
        self.session = session
        self._events = events
        self._early = early
        self._started = started
        self._iterator: AsyncGenerator[bytes, None] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterator is None:
            self._iterator = self._bytes()
        return self._iterator

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()
        else:  # never read: the run is stopped here
            await close_chunks(self._events)
            self._runner.ended(self.ctx, self.session, self._started, None)

    async def _all_events(self) -> AsyncGenerator[AgentEvent, None]:
        for event in self._early:
            yield event
        async for event in self._events:
            yield event

    async def _bytes(self) -> AsyncGenerator[bytes, None]:
        runner, ctx, session = self._runner, self.ctx, self.session
        envelope = _ChunkEnvelope(ctx)
        include_usage = bool((self.request.get("stream_options") or {}).get("include_usage"))
        answer: AgentAnswer | None = None
        # Guardrails check the answer, not the comment lines: a guarded run shows what its
        # tools did (names, ids, outcome, time), never what they read or returned.
        bare = ctx.guards is not None
        try:
            async for event in self._all_events():
                if isinstance(event, DeltaEvent):
                    yield envelope.chunk(event.delta)
                elif isinstance(event, DoneEvent):
                    answer = event.answer
                    yield envelope.chunk({}, answer.finish_reason)
                else:
                    yield _comment(event, bare)
        except Exception as exc:
            raise _as_gateway_error(exc, runner.name) from exc
        finally:
            await close_chunks(self._events)
            runner.ended(ctx, session, self._started, answer)
        usage = session.usage
        if answer is not None:
            yield b": agent " + encode(_agent_field(runner.name, answer, usage)) + b"\n\n"
        if include_usage:
            yield envelope.usage(usage)
        yield b"data: [DONE]\n\n"


class _ChunkEnvelope:
    """Wraps deltas in ``chat.completion.chunk`` objects of one completion."""

    __slots__ = ("_created", "_first", "_id", "_model")

    def __init__(self, ctx: RequestContext) -> None:
        self._id = f"chatcmpl-{ctx.request_id}"
        self._model = ctx.model
        self._created = int(time.time())
        self._first = True

    def chunk(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> bytes:
        if self._first:
            self._first = False
            delta = {"role": "assistant", **delta}
        body = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [
                {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        return b"data: " + encode(body) + b"\n\n"

    def usage(self, usage: RunUsage) -> bytes:
        body = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": _usage_field(usage),
        }
        return b"data: " + encode(body) + b"\n\n"


def _comment(event: AgentEvent, bare: bool = False) -> bytes:
    """A tool or step event as an SSE comment line (``: <kind> <json>``); ``bare`` leaves out
    the arguments and results (a guarded run)."""
    if isinstance(event, ToolCallEvent):
        kind = "tool_call"
        data: dict[str, Any] = {"id": event.call_id, "name": event.name}
        if not bare:
            data["arguments"] = event.arguments[:_PREVIEW]
            data["truncated"] = len(event.arguments) > _PREVIEW
    elif isinstance(event, ToolResultEvent):
        kind = "tool_result"
        data = {
            "id": event.call_id,
            "name": event.name,
            "is_error": event.result.is_error,
            "seconds": round(event.seconds, 6),
        }
        if not bare:
            text = event.result.text()
            data["content"] = text[:_PREVIEW]
            data["truncated"] = len(text) > _PREVIEW
    elif isinstance(event, StepEvent):
        kind = "step"
        data = {"number": event.number, "model": event.model, "route": event.route}
    else:  # pragma: no cover - deltas and the end are not comments
        raise TypeError(type(event).__name__)
    # A comment is one line: JSON never holds a raw newline, so the event cannot be split.
    return b": " + kind.encode() + b" " + encode(data) + b"\n\n"


def _usage_field(usage: RunUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _agent_field(name: str, answer: AgentAnswer, usage: RunUsage) -> dict[str, Any]:
    return {
        "name": name,
        "stop_reason": answer.stop_reason,
        "steps": usage.steps,
        "tool_calls": usage.tool_calls,
        "cost_usd": usage.cost_nanos / 1e9,
        "model_ms": round(usage.model_s * 1000, 3),
        "tool_ms": round(usage.tool_s * 1000, 3),
    }


def _summary(answer: AgentAnswer, usage: RunUsage) -> str:
    return (
        f"stop={answer.stop_reason}; steps={usage.steps}; tool_calls={usage.tool_calls}; "
        f"model_ms={usage.model_s * 1000:.3f}; tool_ms={usage.tool_s * 1000:.3f}"
    )


def _completion(
    ctx: RequestContext, answer: AgentAnswer, usage: RunUsage, *, include_agent: bool
) -> bytes:
    message = {"role": "assistant", **answer.message}
    message.setdefault("content", None)
    body: dict[str, Any] = {
        "id": f"chatcmpl-{ctx.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": ctx.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": _usage_field(usage),
    }
    if include_agent:
        body["agent"] = _agent_field(ctx.model, answer, usage)
    return encode(body)
