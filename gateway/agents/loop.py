"""The built-in agent type ``tool_loop``: call the model, run its tool calls, repeat.

Each step sends the conversation (the agent's instructions first) with the tools to the model
chosen by the agent's router. When the model answers without tool calls, that is the answer.
When it calls tools, the calls run (concurrently when there are several), their results are
appended, and the loop goes on. Before each step the run's limits are checked (steps, seconds,
dollars, tokens); at a limit, one last call *without* tools produces the final answer, and the
answer says which limit stopped the run (OpenAI Agents SDK semantics: a graceful final answer).

Calls to tools the agent does not own belong to the client (its own ``tools``): the run stops
and returns them with ``finish_reason: tool_calls``. Calls to a tool marked
``require_approval`` stop the run the same way, pending; the client approves by sending the
conversation back as returned (the pending call without a result), or refuses by adding a
``tool`` message for it saying so. Calls the gateway ran in that step are not in the returned
message (the client has no results to pair them with); the model sees them on the next turn
only if it asks again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import anyio

from gateway.agents.base import (
    AgentAnswer,
    AgentEvent,
    AgentSession,
    DeltaEvent,
    DoneEvent,
    RunLimits,
    StepEvent,
    StepOptions,
    StepResult,
    StopReason,
    ToolCall,
    ToolCallEvent,
    ToolResultEvent,
)
from gateway.agents.routing import ModelDirectory, StepRouter
from gateway.agents.toolcalls import calls_in_message
from gateway.codec import encode
from gateway.errors import InvalidRequestError
from gateway.settings_agents import AgentSettings
from gateway.tokens import estimate_prompt_tokens
from gateway.tools.base import ToolResult

# The share of a run's time kept for the final answer once time runs short (at most 5 s).
_FINAL_SHARE = 0.2
_FINAL_MAX_S = 5.0
_FINAL_NOTE = (
    "You have reached this run's {limit} limit. Answer now with what you know, without "
    "calling any tool."
)
MAX_CALLS_PER_STEP = 32  # calls beyond these in one step get an error result
MAX_CONCURRENT_CALLS = 8  # calls of one step running at once
_NOTE_TOKENS = 40  # the final answer's note, in tokens, with room to spare
_LIMIT_WORDS = {
    "max_steps": "step",
    "max_seconds": "time",
    "max_cost": "cost",
    "max_tokens": "token",
}
# Fields of the client's request passed on to each step (the rest is the loop's own).
_PASSED = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "user",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "metadata",
)


class ToolLoopAgent:
    """The ``tool_loop`` agent (satisfies :class:`gateway.agents.base.Agent`).

    Args:
        settings: the agent's configuration.
        directory: facts about the model groups, for its router.

    Raises:
        ValueError: no model to call (``model`` or ``routing.tiers``), or a routing policy
            no candidate satisfies.
    """

    def __init__(self, settings: AgentSettings, directory: ModelDirectory) -> None:
        self.settings = settings
        self.router = StepRouter(settings.model, settings.routing, directory)
        self._final_grace = min(_FINAL_MAX_S, (settings.max_seconds or 600.0) * _FINAL_SHARE)

    def models(self) -> Sequence[str]:
        return self.router.models()

    async def run(self, request: Mapping[str, Any], session: AgentSession) -> AgentAnswer:
        async for event in self._loop(request, session, streamed=False):
            if isinstance(event, DoneEvent):
                return event.answer
        raise RuntimeError("the loop ended without an answer")  # pragma: no cover

    def stream(
        self, request: Mapping[str, Any], session: AgentSession
    ) -> AsyncIterator[AgentEvent]:
        return self._loop(request, session, streamed=True)

    # -- the loop -----------------------------------------------------------------------------

    def _conversation(self, request: Mapping[str, Any]) -> list[dict[str, Any]]:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError("`messages` must be a non-empty list.", param="messages")
        conversation = [dict(m) for m in messages if isinstance(m, Mapping)]
        if self.settings.instructions:
            conversation.insert(0, {"role": "system", "content": self.settings.instructions})
        return conversation

    def _tools(self, request: Mapping[str, Any], session: AgentSession) -> list[dict[str, Any]]:
        own = session.tools.specs()
        theirs = request.get("tools") or []
        if not isinstance(theirs, list):
            raise InvalidRequestError("`tools` must be a list.", param="tools")
        for spec in theirs:
            name = spec.get("function", {}).get("name") if isinstance(spec, Mapping) else None
            if isinstance(name, str) and session.tools.owns(name):
                raise InvalidRequestError(
                    f"The tool `{name}` is one of `{session.name}`'s own; rename yours.",
                    param="tools",
                )
        return [*own, *theirs]

    def _step_request(
        self,
        request: Mapping[str, Any],
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {k: request[k] for k in _PASSED if k in request}
        body["model"] = model
        body["messages"] = messages
        if tools:
            body["tools"] = tools
            choice = request.get("tool_choice", self.settings.tool_choice)
            if choice is not None:
                body["tool_choice"] = choice
            body["parallel_tool_calls"] = self.settings.parallel_tool_calls
        return body

    def _limit(self, session: AgentSession, ahead: tuple[int, int]) -> StopReason | None:
        """Which limit the next step would cross, if any. Money and tokens are checked ahead:
        the next step and the final answer after it (:class:`_Forecast`) must both still fit,
        so a run ends within its budget but for the estimate's error."""
        limits, usage = session.limits, session.usage
        if usage.steps + 1 >= limits.max_steps:
            return "max_steps"  # the last allowed step is the final answer's
        if time.monotonic() >= limits.deadline - self._final_grace:
            return "max_seconds"
        cost, tokens = ahead  # already the next step and the final answer together
        if limits.max_cost_nanos is not None and usage.cost_nanos + cost > limits.max_cost_nanos:
            return "max_cost"
        if limits.max_tokens is not None and usage.tokens + tokens > limits.max_tokens:
            return "max_tokens"
        return None

    async def _loop(
        self, request: Mapping[str, Any], session: AgentSession, *, streamed: bool
    ) -> AsyncGenerator[AgentEvent, None]:
        messages = self._conversation(request)
        tools = self._tools(request, session)
        forecast = _Forecast()
        # A conversation sent back with calls awaiting approval runs them first: only the
        # calls this gateway returned (sealed), never calls a client wrote itself.
        pending = _unanswered_calls(messages)
        if pending:
            approved = [
                c
                for c in pending
                if session.tools.needs_approval(c.name) and session.tools.approved(c)
            ]
            refused = [c for c in pending if c not in approved]
            _answer_unrun(refused, messages)
            async for event in self._run_calls(approved, messages, session, streamed):
                yield event
        while True:
            stop = self._limit(session, forecast.ahead())
            final = stop is not None
            if stop is not None:
                messages.append(
                    {"role": "system", "content": _FINAL_NOTE.format(limit=_LIMIT_WORDS[stop])}
                )
            choice = self.router.choose(
                messages,
                () if final else tools,
                lambda: estimate_prompt_tokens({"messages": messages}),
            )
            body = self._step_request(request, choice.model, messages, [] if final else tools)
            options = StepOptions(
                route=choice.reason, local_only=choice.local_only, cap=_remaining(session)
            )
            yield StepEvent(session.usage.steps + 1, choice.model, choice.reason)
            if streamed:
                step_stream = session.models.stream(body, options)
                try:
                    async for chunk in step_stream:
                        for c in chunk.get("choices") or ():
                            text = (c.get("delta") or {}).get("content")
                            if text:
                                yield DeltaEvent({"content": text})
                finally:
                    await step_stream.aclose()
                step = step_stream.result
            else:
                step = await session.models.chat(body, options)
            forecast.stepped(step)
            calls = [] if final else step.tool_calls
            if not calls:
                finish = "length" if stop == "max_tokens" else step.finish_reason
                if finish == "tool_calls":  # a final call that still wrote calls: not ours
                    finish = "stop"
                message = {"role": "assistant", "content": step.message.get("content") or ""}
                yield DoneEvent(AgentAnswer(message, finish, stop or "answered"))
                return
            messages.append(_assistant_message(step))
            returned = [
                c
                if not session.tools.owns(c.name)
                else session.tools.pending(c)  # sealed: only this call runs once approved
                for c in calls
                if not session.tools.owns(c.name) or session.tools.needs_approval(c.name)
            ]
            ours = [
                c
                for c in calls
                if session.tools.owns(c.name) and not session.tools.needs_approval(c.name)
            ]
            appended = len(messages)
            async for event in self._run_calls(ours, messages, session, streamed):
                yield event
            forecast.appended(messages[appended - 1 :])
            if returned:
                approval = all(session.tools.owns(c.name) for c in returned)
                if streamed:
                    yield DeltaEvent({"tool_calls": _call_deltas(returned)})
                message = {
                    "role": "assistant",
                    "content": step.message.get("content"),
                    "tool_calls": [c.message_part() for c in returned],
                }
                reason: StopReason = "approval" if approval else "tool_calls"
                yield DoneEvent(AgentAnswer(message, "tool_calls", reason))
                return

    async def _run_calls(
        self,
        calls: Sequence[ToolCall],
        messages: list[dict[str, Any]],
        session: AgentSession,
        streamed: bool,
    ) -> AsyncGenerator[AgentEvent, None]:
        """Run ``calls`` (concurrently, at most :data:`MAX_CONCURRENT_CALLS` at a time, and
        at most :data:`MAX_CALLS_PER_STEP` of them: the others get an error result), and append
        their results in the calls' order."""
        if not calls:
            return
        for call in calls:
            yield ToolCallEvent(call.id, call.name, call.arguments)
        too_many = ToolResult(
            f"Not run: at most {MAX_CALLS_PER_STEP} tool calls are run per step.", is_error=True
        )
        results: list[tuple[ToolResult, float]] = [(too_many, 0.0)] * len(calls)
        started = time.perf_counter()
        slots = anyio.Semaphore(MAX_CONCURRENT_CALLS)

        async def one(i: int, call: ToolCall) -> None:
            async with slots:
                began = time.perf_counter()
                results[i] = (await session.tools.call(call), time.perf_counter() - began)

        runnable = list(enumerate(calls))[:MAX_CALLS_PER_STEP]
        if len(runnable) == 1:
            await one(0, calls[0])
        else:
            async with anyio.create_task_group() as group:
                for i, call in runnable:
                    group.start_soon(one, i, call)
        session.usage.tool_s += time.perf_counter() - started
        session.usage.tool_calls += len(runnable)
        for call, (result, seconds) in zip(calls, results, strict=True):
            text = result.text()
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": f"Error: {text}" if result.is_error else text,
                }
            )
            yield ToolResultEvent(call.id, call.name, result, seconds)


class _Forecast:
    """What the next step and the final answer after it will likely take, from the last step's
    real usage: every step sends the whole conversation again, so the next prompt is the last
    prompt, plus the last answer, plus what was appended (tool calls and results, estimated from
    their length), plus the final answer's note; its output about the last one's."""

    __slots__ = ("added", "cost_per_token", "last_completion", "last_prompt")

    def __init__(self) -> None:
        self.last_prompt = self.last_completion = self.added = 0
        self.cost_per_token = 0.0

    def stepped(self, step: StepResult) -> None:
        usage = step.usage
        self.last_prompt, self.last_completion = usage.prompt_tokens, usage.completion_tokens
        self.cost_per_token = usage.cost_nanos / usage.tokens if usage.tokens else 0.0
        self.added = 0

    def appended(self, messages: Sequence[Mapping[str, Any]]) -> None:
        self.added += sum(len(encode(m)) // 4 + 4 for m in messages)

    def ahead(self) -> tuple[int, int]:
        """(cost, tokens) of the next step and the final answer after it."""
        if not self.last_prompt and not self.last_completion:
            return (0, 0)
        growth = self.last_completion + self.added + _NOTE_TOKENS
        next_step = self.last_prompt + growth + self.last_completion
        tokens = next_step + (next_step + growth)
        return (round(tokens * self.cost_per_token), tokens)


def _assistant_message(step: StepResult) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": step.message.get("content"),
        "tool_calls": [c.message_part() for c in step.tool_calls],
    }


def _call_deltas(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for i, c in enumerate(calls)
    ]


def _remaining(session: AgentSession) -> RunLimits:
    """What is left of the run's limits: the cap of a step whose model is itself an agent or
    workflow, so a nested run cannot spend more than this one may."""
    limits, usage = session.limits, session.usage

    def left(limit: int | None, used: int) -> int | None:
        return None if limit is None else max(0, limit - used)

    return RunLimits(
        max_steps=max(1, limits.max_steps - usage.steps),
        deadline=limits.deadline,
        max_cost_nanos=left(limits.max_cost_nanos, usage.cost_nanos),
        max_tokens=left(limits.max_tokens, usage.tokens),
    )


def _answer_unrun(calls: Sequence[ToolCall], messages: list[dict[str, Any]]) -> None:
    """Give each call sent back without a result, and not approvable, a result saying so
    (a conversation must answer every call before the model is called again)."""
    for call in calls:
        messages.append(
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": "Error: not run: no result was given for this call, and only calls "
                "the gateway returned for approval run when sent back.",
            }
        )


def _unanswered_calls(messages: list[dict[str, Any]]) -> list[ToolCall]:
    """Calls of the last assistant message that no later ``tool`` message answers (a run
    that stopped for approval, sent back to go on)."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message.get("role") == "assistant":
            calls = calls_in_message(message)
            answered = {m.get("tool_call_id") for m in messages[i + 1 :] if m.get("role") == "tool"}
            return [c for c in calls if c.id not in answered]
        if message.get("role") not in ("tool",):
            return []
    return []
