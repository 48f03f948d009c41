"""The ``workflow`` agent over a model client that answers per agent: sequences, parallel
branches, loops, templates, and the one budget split between the agents it calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from gateway.agents.base import (
    DEFAULT_STEP,
    DeltaEvent,
    DoneEvent,
    RunLimits,
    RunUsage,
    StepEvent,
    StepOptions,
    StepResult,
    StepStream,
)
from gateway.agents.workflow import WorkflowAgent, fill
from gateway.errors import UpstreamError
from gateway.settings_agents import WorkflowSettings, WorkflowStep
from tests.unit.agents.agent_support import Directory, Session, limits, toolbox

pytestmark = pytest.mark.anyio

Reply = Callable[[str], Awaitable[str]]


@dataclass(frozen=True)
class Called:
    """One agent call the workflow made."""

    agent: str
    text: str
    cap: RunLimits | None
    route: str | None


@dataclass
class AgentModels:
    """A :class:`gateway.agents.base.ModelClient` whose "models" are agents answering with
    ``replies[name](input)``; each call uses ``per_call`` of the run's budget (folded into the
    run's usage, as the gateway's client does)."""

    replies: Mapping[str, Reply]
    usage: RunUsage
    per_call: RunUsage = field(default_factory=lambda: RunUsage(steps=1))
    calls: list[Called] = field(default_factory=list)

    async def chat(
        self, request: Mapping[str, Any], options: StepOptions = DEFAULT_STEP
    ) -> StepResult:
        agent = request["model"]
        [message] = request["messages"]
        assert message["role"] == "user"
        self.calls.append(Called(agent, message["content"], options.cap, options.route))
        content = await self.replies[agent](message["content"])
        used = RunUsage()
        used.add(self.per_call)
        self.usage.add(used)
        return StepResult(
            message={"role": "assistant", "content": content},
            finish_reason="stop",
            tool_calls=[],
            model=agent,
            backend="agent",
            usage=used,
        )

    def stream(self, request: Mapping[str, Any], options: StepOptions = DEFAULT_STEP) -> StepStream:
        raise AssertionError("a workflow calls its agents whole")


def wrapping(name: str) -> Reply:
    """An agent answering ``name(input)``."""

    async def reply(text: str) -> str:
        return f"{name}({text})"

    return reply


def workflow(*steps: WorkflowStep) -> WorkflowAgent:
    return WorkflowAgent(WorkflowSettings(name="flow", steps=list(steps)), Directory())


def session(
    replies: Mapping[str, Reply],
    run_limits: RunLimits | None = None,
    per_call: RunUsage | None = None,
) -> tuple[Session, AgentModels]:
    usage = RunUsage()
    models = AgentModels(replies, usage, per_call or RunUsage(steps=1))
    run = Session(
        models=models, tools=toolbox([]), limits=run_limits or limits(), name="flow", usage=usage
    )
    return run, models


def ask(text: str = "topic") -> dict[str, Any]:
    return {"model": "flow", "messages": [{"role": "user", "content": text}]}


def agent(name: str, **fields: Any) -> WorkflowStep:
    return WorkflowStep(agent=name, **fields)


async def test_sequential_steps_pass_each_output_on() -> None:
    run, models = session({"a": wrapping("a"), "b": wrapping("b")})

    answer = await workflow(agent("a"), agent("b")).run(ask("hello"), run)

    assert answer.message == {"role": "assistant", "content": "b(a(hello))"}
    assert (answer.finish_reason, answer.stop_reason) == ("stop", "answered")
    assert [(c.agent, c.text, c.route) for c in models.calls] == [
        ("a", "hello", "workflow"),
        ("b", "a(hello)", "workflow"),
    ]


async def test_the_request_is_the_last_user_message() -> None:
    run, _ = session({"a": wrapping("a")})
    request = {
        "messages": [
            {"role": "user", "content": "old"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "text", "text": "new"}]},
        ]
    }

    answer = await workflow(agent("a")).run(request, run)

    assert answer.message["content"] == "a(new)"


def meeting(name: str, mine: anyio.Event, theirs: anyio.Event) -> Reply:
    """An agent that answers only once its partner has started too."""

    async def reply(text: str) -> str:
        mine.set()
        await theirs.wait()
        return f"{name}({text})"

    return reply


async def test_parallel_branches_run_concurrently_and_are_joined() -> None:
    critic_started, editor_started = anyio.Event(), anyio.Event()
    replies = {
        "critic": meeting("critic", critic_started, editor_started),
        "editor": meeting("editor", editor_started, critic_started),
        "writer": wrapping("writer"),
    }
    run, models = session(replies)
    flow = workflow(
        WorkflowStep(parallel=[agent("critic", output="critique"), agent("editor")]),
        agent("writer"),
    )

    with anyio.fail_after(10):  # run one after the other, the branches would wait forever
        answer = await flow.run(ask("draft"), run)

    joined = "[critique]\ncritic(draft)\n\n[editor]\neditor(draft)"
    assert answer.message["content"] == f"writer({joined})"
    assert sorted(c.agent for c in models.calls[:2]) == ["critic", "editor"]
    assert all(c.text == "draft" for c in models.calls[:2])


async def test_named_outputs_fill_later_templates() -> None:
    replies = {"researcher": wrapping("researcher"), "writer": wrapping("writer")}
    run, models = session(replies)
    flow = workflow(
        agent("researcher", output="facts"),
        agent("writer", input="Facts: {facts}. Ask: {request}. Last: {input}. {unknown}"),
    )

    answer = await flow.run(ask("cats"), run)

    expected_input = "Facts: researcher(cats). Ask: cats. Last: researcher(cats). {unknown}"
    assert models.calls[1].text == expected_input
    assert answer.message["content"] == f"writer({expected_input})"


async def test_parallel_named_outputs_fill_templates() -> None:
    replies = {name: wrapping(name) for name in ("left", "right", "join")}
    run, models = session(replies)
    flow = workflow(
        WorkflowStep(parallel=[agent("left", output="l"), agent("right", output="r")]),
        agent("join", input="{r} + {l}"),
    )

    await flow.run(ask("x"), run)

    assert models.calls[-1].text == "right(x) + left(x)"


def test_fill_leaves_unknown_names() -> None:
    assert fill("{a} and {b} and {0}", {"a": "A"}) == "A and {b} and {0}"


async def test_a_loop_stops_when_its_output_contains_until() -> None:
    passes = iter(["draft 1", "draft 2", "APPROVED draft 3", "never"])

    async def checker(text: str) -> str:
        return f"{next(passes)} after {text}"

    run, models = session({"checker": checker})
    flow = workflow(WorkflowStep(loop=[agent("checker")], max_iterations=5, until="APPROVED"))

    answer = await flow.run(ask("v0"), run)

    assert len(models.calls) == 3
    assert [c.text for c in models.calls] == [
        "v0",
        "draft 1 after v0",
        "draft 2 after draft 1 after v0",
    ]
    assert answer.message["content"].startswith("APPROVED draft 3")


async def test_a_loop_runs_at_most_max_iterations() -> None:
    run, models = session({"a": wrapping("a"), "b": wrapping("b")})
    flow = workflow(WorkflowStep(loop=[agent("a"), agent("b")], max_iterations=2, until="never"))

    answer = await flow.run(ask("x"), run)

    assert [c.agent for c in models.calls] == ["a", "b", "a", "b"]
    assert answer.message["content"] == "b(a(b(a(x))))"


async def test_each_call_is_capped_by_what_is_left_of_the_budget() -> None:
    run_limits = limits(max_steps=20, max_cost_nanos=1000, max_tokens=400)
    per_call = RunUsage(steps=2, cost_nanos=100, prompt_tokens=30, completion_tokens=10)
    b_started, c_started = anyio.Event(), anyio.Event()
    replies = {
        "a": wrapping("a"),
        "b": meeting("b", b_started, c_started),
        "c": meeting("c", c_started, b_started),
        "d": wrapping("d"),
    }
    run, models = session(replies, run_limits, per_call)
    flow = workflow(agent("a"), WorkflowStep(parallel=[agent("b"), agent("c")]), agent("d"))

    with anyio.fail_after(10):
        await flow.run(ask(), run)

    caps = {c.agent: c.cap for c in models.calls}
    deadline = run_limits.deadline
    assert caps["a"] == RunLimits(20, deadline, 1000, 400)
    # The branches are both under way before either has spent: each has half of what is left.
    assert caps["b"] == RunLimits(9, deadline, 450, 180)
    assert caps["c"] == RunLimits(9, deadline, 450, 180)
    assert caps["d"] == RunLimits(14, deadline, 700, 280)
    assert run.usage.steps == 8


async def test_a_spent_step_budget_stops_with_the_last_output() -> None:
    replies = {name: wrapping(name) for name in ("a", "b", "c")}
    run, models = session(replies, limits(max_steps=2))

    answer = await workflow(agent("a"), agent("b"), agent("c")).run(ask("x"), run)

    assert answer.message == {"role": "assistant", "content": "b(a(x))"}
    assert (answer.finish_reason, answer.stop_reason) == ("stop", "max_steps")
    assert [c.agent for c in models.calls] == ["a", "b"]


@pytest.mark.parametrize(
    ("budget", "reason"),
    [
        ({"max_cost_nanos": 150}, "max_cost"),
        ({"max_tokens": 60}, "max_tokens"),
    ],
)
async def test_a_spent_money_or_token_budget_stops_the_run(
    budget: dict[str, int], reason: str
) -> None:
    per_call = RunUsage(steps=1, cost_nanos=100, prompt_tokens=20, completion_tokens=20)
    # The limits are made here, not at collection: their deadline counts from now.
    run, models = session({"a": wrapping("a"), "b": wrapping("b")}, limits(**budget), per_call)

    answer = await workflow(agent("a"), agent("b"), agent("a")).run(ask("x"), run)

    assert answer.stop_reason == reason
    assert answer.message["content"] == "b(a(x))"
    assert len(models.calls) == 2


async def test_a_passed_deadline_stops_before_the_first_call() -> None:
    run, models = session({"a": wrapping("a")}, limits(seconds=-1))

    answer = await workflow(agent("a")).run(ask("x"), run)

    assert answer.stop_reason == "max_seconds"
    assert answer.message["content"] == "x"
    assert models.calls == []


async def test_a_budget_too_small_to_split_between_branches_stops_the_run() -> None:
    replies = {name: wrapping(name) for name in ("a", "b", "c")}
    run, models = session(replies, limits(max_steps=2))
    flow = workflow(agent("a"), WorkflowStep(parallel=[agent("b"), agent("c")]))

    with anyio.fail_after(10):
        answer = await flow.run(ask("x"), run)

    # One step is left for two branches: neither gets one.
    assert answer.stop_reason == "max_steps"
    assert answer.message["content"] == "a(x)"
    assert [c.agent for c in models.calls] == ["a"]


async def test_a_branch_error_reaches_the_caller_and_stops_the_other_branches() -> None:
    never = anyio.Event()

    async def broken(text: str) -> str:
        raise UpstreamError("the agent's model failed")

    async def waiting(text: str) -> str:
        await never.wait()
        return "late"

    run, models = session({"waiting": waiting, "broken": broken, "after": wrapping("after")})
    flow = workflow(WorkflowStep(parallel=[agent("waiting"), agent("broken")]), agent("after"))

    with anyio.fail_after(10), pytest.raises(UpstreamError, match="the agent's model failed"):
        await flow.run(ask("x"), run)

    assert "after" not in [c.agent for c in models.calls]


async def test_stream_reports_each_agent_then_the_answer() -> None:
    run, _ = session({"a": wrapping("a"), "b": wrapping("b")})

    with anyio.fail_after(10):
        events = [e async for e in workflow(agent("a"), agent("b")).stream(ask("x"), run)]

    assert events[:2] == [StepEvent(1, "a", "workflow"), StepEvent(2, "b", "workflow")]
    assert events[2] == DeltaEvent({"content": "b(a(x))"})
    done = events[3]
    assert isinstance(done, DoneEvent)
    assert done.answer.message["content"] == "b(a(x))"
    assert len(events) == 4


def test_models_lists_every_agent_at_any_depth() -> None:
    flow = workflow(
        agent("a"),
        WorkflowStep(parallel=[agent("b"), WorkflowStep(sequential=[agent("c")])]),
        WorkflowStep(loop=[agent("d")]),
    )

    assert flow.models() == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("steps", "where", "has"),
    [
        ([WorkflowStep()], r"steps\[0\]", "none"),
        ([WorkflowStep(sequential=[])], r"steps\[0\]", "none"),
        ([WorkflowStep(agent="a", loop=[agent("b")])], r"steps\[0\]", "agent, loop"),
        (
            [agent("a"), WorkflowStep(sequential=[agent("b"), WorkflowStep()])],
            r"steps\[1\]\.sequential\[1\]",
            "none",
        ),
        (
            [WorkflowStep(parallel=[WorkflowStep(agent="a", parallel=[agent("b")])])],
            r"steps\[0\]\.parallel\[0\]",
            "agent, parallel",
        ),
    ],
)
def test_a_step_must_be_exactly_one_kind(steps: list[WorkflowStep], where: str, has: str) -> None:
    with pytest.raises(ValueError, match=rf"{where} needs exactly one of .* \(has {has}\)"):
        WorkflowAgent(WorkflowSettings(name="flow", steps=steps), Directory())
