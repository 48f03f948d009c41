"""The built-in agent type ``workflow``: agents composed in sequence, in parallel and in loops,
served as one model with one budget.

The names follow the frameworks people know (Google ADK's ``SequentialAgent``,
``ParallelAgent``, ``LoopAgent(max_iterations)``):

- a **sequential** list runs its steps in order, each one's output the next one's input;
- a **parallel** list runs its steps concurrently on the same input; their outputs are joined
  (``[agent]`` headings) and each named ``output`` is kept for later templates;
- a **loop** repeats its steps up to ``max_iterations`` passes, or until a pass's output
  contains ``until``;
- ``input`` templates a step's input from ``{input}`` (the previous output), ``{request}`` (the
  client's last message) and ``{<name>}`` (a named output).

Every agent call is a step of the workflow's run, made through the pipeline as the caller: the
agent's own steps are charged to the caller and count against the workflow's budget (steps,
seconds, dollars, tokens). Before each call the workflow's remaining budget is handed to the
agent as its cap (split evenly between parallel branches), so the run as a whole cannot exceed
it; once it is spent, the workflow answers with what it has and says which limit stopped it.
Progress streams as ``: step`` comment lines; the final output as the answer.
"""

from __future__ import annotations

import re
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
    StopReason,
)
from gateway.agents.routing import ModelDirectory
from gateway.errors import GatewayError
from gateway.settings_agents import WorkflowSettings, WorkflowStep

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class BudgetSpent(Exception):  # noqa: N818 - a signal, not an error
    """The workflow's budget ran out before a step (carries which limit)."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason)
        self.reason = reason


def _last_user_text(request: Mapping[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` replaced by ``values[name]`` (unknown names stay)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def agents_of(steps: Sequence[WorkflowStep]) -> list[str]:
    """Every agent (or model) the steps call, at any depth."""
    found: list[str] = []
    for step in steps:
        if step.agent is not None:
            found.append(step.agent)
        for inner in (step.sequential, step.parallel, step.loop):
            if inner:
                found.extend(agents_of(inner))
    return found


def _check(steps: Sequence[WorkflowStep], where: str) -> None:
    for i, step in enumerate(steps):
        given = {
            "agent": step.agent,
            "sequential": step.sequential,
            "parallel": step.parallel,
            "loop": step.loop,
        }
        kinds = [k for k, v in given.items() if v]
        if len(kinds) != 1:
            raise ValueError(
                f"{where}[{i}] needs exactly one of agent, sequential, parallel, loop "
                f"(has {', '.join(kinds) or 'none'})"
            )
        for kind in ("sequential", "parallel", "loop"):
            inner = given[kind]
            if isinstance(inner, list):
                _check(inner, f"{where}[{i}].{kind}")


class WorkflowAgent:
    """The ``workflow`` agent type (satisfies :class:`gateway.agents.base.Agent`).

    Args:
        settings: the workflow's configuration.
        directory: facts about the model groups (unused: the agents route their own steps).

    Raises:
        ValueError: a step that is not exactly one of agent, sequential, parallel, loop.
    """

    def __init__(self, settings: WorkflowSettings, directory: ModelDirectory) -> None:
        _check(settings.steps, "steps")
        self.settings = settings
        del directory

    def models(self) -> Sequence[str]:
        return agents_of(self.settings.steps)

    async def run(self, request: Mapping[str, Any], session: AgentSession) -> AgentAnswer:
        async for event in self._run(request, session):
            if isinstance(event, DoneEvent):
                return event.answer
        raise RuntimeError("the workflow ended without an answer")  # pragma: no cover

    def stream(
        self, request: Mapping[str, Any], session: AgentSession
    ) -> AsyncIterator[AgentEvent]:
        return self._run(request, session, streamed=True)

    async def _run(
        self, request: Mapping[str, Any], session: AgentSession, streamed: bool = False
    ) -> AsyncGenerator[AgentEvent, None]:
        text = _last_user_text(request)
        values = {"request": text, "input": text}
        stop: StopReason = "answered"
        out = [text]
        try:
            async for event in self._sequence(self.settings.steps, text, values, session, 1, out):
                yield event
        except BudgetSpent as spent:
            stop = spent.reason
            out[0] = values.get("input", out[0])
        if streamed:
            yield DeltaEvent({"content": out[0]})
        yield DoneEvent(AgentAnswer({"role": "assistant", "content": out[0]}, "stop", stop))

    def _cap(self, session: AgentSession, share: int) -> RunLimits:
        """The workflow's remaining budget, split ``share`` ways.

        Raises:
            BudgetSpent: nothing is left of some limit.
        """
        limits, usage = session.limits, session.usage
        if time.monotonic() >= limits.deadline:
            raise BudgetSpent("max_seconds")
        steps = (limits.max_steps - usage.steps) // share
        if steps < 1:
            raise BudgetSpent("max_steps")
        cost = None
        if limits.max_cost_nanos is not None:
            cost = (limits.max_cost_nanos - usage.cost_nanos) // share
            if cost <= 0:
                raise BudgetSpent("max_cost")
        tokens = None
        if limits.max_tokens is not None:
            tokens = (limits.max_tokens - usage.tokens) // share
            if tokens <= 0:
                raise BudgetSpent("max_tokens")
        return RunLimits(steps, limits.deadline, cost, tokens)

    async def _sequence(
        self,
        steps: Sequence[WorkflowStep],
        text: str,
        values: dict[str, str],
        session: AgentSession,
        share: int,
        out: list[str],
    ) -> AsyncGenerator[AgentEvent, None]:
        """Run ``steps`` in order; ``out[0]`` is the last one's output."""
        out[0] = text
        for step in steps:
            async for event in self._step(step, out[0], values, session, share, out):
                yield event
            values["input"] = out[0]

    async def _step(
        self,
        step: WorkflowStep,
        text: str,
        values: dict[str, str],
        session: AgentSession,
        share: int,
        out: list[str],
    ) -> AsyncGenerator[AgentEvent, None]:
        """Run one step on ``text``; its progress as events, its output in ``out[0]``."""
        source = fill(step.input, values) if step.input else text
        if step.agent is not None:
            yield StepEvent(session.usage.steps + 1, step.agent, "workflow")
            out[0] = await self._call(step.agent, source, session, share)
        elif step.sequential:
            async for event in self._sequence(step.sequential, source, values, session, share, out):
                yield event
        elif step.parallel:
            out[0] = await self._parallel(step.parallel, source, values, session, share)
        else:
            assert step.loop
            out[0] = source
            for _ in range(step.max_iterations):
                async for event in self._sequence(step.loop, out[0], values, session, share, out):
                    yield event
                if step.until is not None and step.until in out[0]:
                    break
        if step.output:
            values[step.output] = out[0]

    async def _parallel(
        self,
        steps: Sequence[WorkflowStep],
        text: str,
        values: dict[str, str],
        session: AgentSession,
        share: int,
    ) -> str:
        """Run ``steps`` concurrently on ``text``; their outputs joined. (Their progress is
        not streamed: the branches run in tasks of their own.)"""
        outputs = [""] * len(steps)
        branch_share = share * len(steps)
        self._cap(session, branch_share)  # each branch must be able to start
        failures: list[BaseException] = []

        async def branch(i: int, step: WorkflowStep, scope: anyio.CancelScope) -> None:
            holder = [text]
            try:
                async for _ in self._step(step, text, dict(values), session, branch_share, holder):
                    pass
            except BudgetSpent as spent:
                failures.append(spent)  # the others finish what they can
            except GatewayError as exc:
                failures.append(exc)
                scope.cancel()  # the run fails: stop the other branches
            outputs[i] = holder[0]
            if step.output:
                values[step.output] = holder[0]

        async with anyio.create_task_group() as group:
            for i, step in enumerate(steps):
                group.start_soon(branch, i, step, group.cancel_scope)
        for failure in failures:  # an error first, then a spent budget
            if isinstance(failure, GatewayError):
                raise failure
        if failures:
            raise failures[0]
        return "\n\n".join(
            f"[{step.output or step.agent or f'branch {i + 1}'}]\n{output}"
            for i, (step, output) in enumerate(zip(steps, outputs, strict=True))
        )

    async def _call(self, agent: str, text: str, session: AgentSession, share: int) -> str:
        cap = self._cap(session, share)
        result = await session.models.chat(
            {"model": agent, "messages": [{"role": "user", "content": text}]},
            StepOptions(route="workflow", cap=cap),
        )
        content = result.message.get("content")
        return content if isinstance(content, str) else ""
