"""The agent contract (``register_agents``).

An agent is served as a model name: a request for it (on ``/v1/chat/completions``,
``/v1/responses`` or ``/v1/messages``: the gateway translates the others to chat) reaches
:meth:`Agent.run`, or :meth:`Agent.stream` when the client streams, instead of a provider. The
agent works through an :class:`AgentSession` bound to the caller:

- ``session.models`` calls models through the gateway's own pipeline, in process (no HTTP to
  itself): the cache, routing, retries, fallbacks and guardrails apply to every step, and each
  step is charged to the caller's key and tenant and recorded as its own usage record;
- ``session.tools`` runs the agent's tools (arguments validated, time-boxed, failures returned
  to the model as error results);
- ``session.limits`` are the run's limits, ``session.usage`` what it has used so far.

An agent deals in assistant messages and deltas; the gateway wraps them in the client's format
(ids, ``usage`` summed over every step, the extension field saying why the run stopped).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from gateway.identity import Principal
from gateway.tools.base import ToolResult

StopReason: TypeAlias = Literal[
    "answered", "tool_calls", "approval", "max_steps", "max_seconds", "max_cost", "max_tokens"
]
"""Why a run ended: the model answered; it called the client's own tools (returned to the
client); a tool needs approval (the pending call is returned); or a limit stopped it (then one
last call without tools produced the answer)."""


@dataclass(frozen=True, slots=True)
class RunLimits:
    """What one run may use. An enclosing workflow's remaining budget caps a nested run's.

    Attributes:
        max_steps: model calls (each step is one).
        deadline: ``time.monotonic()`` by which the run must end.
        max_cost_nanos: nano-dollars over every step (None: no money limit).
        max_tokens: prompt plus completion tokens over every step (None: no token limit).
    """

    max_steps: int
    deadline: float
    max_cost_nanos: int | None = None
    max_tokens: int | None = None

    def capped_by(self, other: RunLimits | None) -> RunLimits:
        """The tighter of ``self`` and ``other`` on every limit."""
        if other is None:
            return self
        return RunLimits(
            max_steps=min(self.max_steps, other.max_steps),
            deadline=min(self.deadline, other.deadline),
            max_cost_nanos=_min_or_none(self.max_cost_nanos, other.max_cost_nanos),
            max_tokens=_min_or_none(self.max_tokens, other.max_tokens),
        )


def _min_or_none(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


@dataclass(slots=True)
class RunUsage:
    """What a run has used so far (model steps, including those of nested agents).

    Attributes:
        steps: model calls made.
        prompt_tokens / completion_tokens / cached_tokens: summed over every step.
        cost_nanos: what the steps cost, in nano-dollars.
        model_s: time spent waiting on models (to a step's last byte).
        tool_s: time spent in tool calls (parallel calls counted once, by their wall time).
        tool_calls: tool calls executed.
    """

    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_nanos: int = 0
    model_s: float = 0.0
    tool_s: float = 0.0
    tool_calls: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: RunUsage) -> None:
        """Fold in a nested run's usage."""
        self.steps += other.steps
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.cost_nanos += other.cost_nanos
        self.model_s += other.model_s
        self.tool_s += other.tool_s
        self.tool_calls += other.tool_calls


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for.

    Attributes:
        id: the model's call id (``call_...``), which its result must echo.
        name: the function name the model called (as it saw it).
        arguments: the arguments as the model wrote them (JSON text; ``{}`` when it sent none).
    """

    id: str
    name: str
    arguments: str

    def message_part(self) -> dict[str, Any]:
        """This call as an entry of an assistant message's ``tool_calls``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True)
class StepResult:
    """One model call an agent made, as it ended.

    Attributes:
        message: the assistant message (``content``, ``tool_calls`` reassembled from a stream).
        finish_reason: the model's (``stop``, ``length``, ``tool_calls``...).
        tool_calls: the calls in ``message``, parsed.
        model: the model group that served the step.
        backend: the backend that served it (``cache`` for a cache hit).
        usage: the step's tokens, cost and model time (``steps`` is 1, or a nested run's).
        route: why this model was chosen (the agent's routing policy), if it chose.
    """

    message: dict[str, Any]
    finish_reason: str
    tool_calls: list[ToolCall]
    model: str
    backend: str
    usage: RunUsage
    route: str | None = None


class StepStream(Protocol):
    """A streamed step: iterate its decoded ``chat.completion.chunk`` objects as they arrive,
    then read :attr:`result`. Close it (``aclose``) to stop the step early."""

    def __aiter__(self) -> AsyncIterator[Mapping[str, Any]]: ...

    @property
    def result(self) -> StepResult:
        """The whole step (only once iteration has ended).

        Raises:
            RuntimeError: the stream has not ended yet.
        """
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StepOptions:
    """How one model call of a run is made.

    Attributes:
        route: why the model was chosen (recorded on the step's usage record and metrics).
        local_only: a hard privacy gate: only model groups whose every backend is marked
            ``local`` may serve it (fallbacks and cost policies included); otherwise 403.
        cap: limits for a nested run (the model is itself an agent or workflow).
    """

    route: str | None = None
    local_only: bool = False
    cap: RunLimits | None = None


DEFAULT_STEP = StepOptions()


class ModelClient(Protocol):
    """Calls models for one run, as the caller, through the gateway's pipeline.

    Each call is one step: it counts against :attr:`AgentSession.limits` (the client refuses a
    step once the deadline has passed) and is folded into :attr:`AgentSession.usage`.
    """

    async def chat(
        self, request: Mapping[str, Any], options: StepOptions = DEFAULT_STEP
    ) -> StepResult:
        """Send an OpenAI chat-completions request body (its ``model`` a model group, agent or
        workflow) and return the step.

        Raises:
            gateway.errors.GatewayError: as the client's own call would have failed (a limit,
                a budget, no backend...), or 504 once the run's deadline has passed.
        """
        ...

    def stream(self, request: Mapping[str, Any], options: StepOptions = DEFAULT_STEP) -> StepStream:
        """Send it as a stream (errors are raised from the iteration, as :meth:`chat`'s)."""
        ...


class ToolBox(Protocol):
    """The tools of one agent (or of a model group's server-side tool execution)."""

    def specs(self) -> list[dict[str, Any]]:
        """The tools as OpenAI ``tools`` entries (``{"type": "function", "function": ...}``)."""
        ...

    def owns(self, name: str) -> bool:
        """Whether ``name`` (as the model calls it) is one of these tools; calls to other names
        belong to the client (its own tools), and are returned to it."""
        ...

    def needs_approval(self, name: str) -> bool:
        """Whether a call to ``name`` must be approved first (``require_approval``): the run
        stops and returns the pending call instead of executing it."""
        ...

    async def call(self, call: ToolCall) -> ToolResult:
        """Run one call: arguments parsed and validated against the tool's schema, the tool's
        timeout (and the run's deadline) enforced. Never raises: a bad argument, a timeout, a
        failure or an unknown tool is an error result for the model to read."""
        ...

    def pending(self, call: ToolCall) -> ToolCall:
        """``call`` as returned to the client for approval: its id carries the gateway's seal
        (an HMAC of the call), so that only this very call runs when it is sent back."""
        ...

    def approved(self, call: ToolCall) -> bool:
        """Whether a call sent back by the client is one :meth:`pending` returned, unchanged."""
        ...


class AgentSession(Protocol):
    """Everything one run of an agent works with.

    Attributes:
        name: the agent's model name (as the client called it).
        principal: the caller; every step and tool call acts for them.
        request_id: the client request's ``x-request-id`` (steps are ``<id>.1``, ``<id>.2``...).
        models: calls models (each call is a step).
        tools: the agent's tools.
        limits: the run's limits (the agent's own, capped by an enclosing workflow's).
        usage: what the run has used so far (updated by every step and tool call).
    """

    @property
    def name(self) -> str: ...

    @property
    def principal(self) -> Principal: ...

    @property
    def request_id(self) -> str: ...

    @property
    def models(self) -> ModelClient: ...

    @property
    def tools(self) -> ToolBox: ...

    @property
    def limits(self) -> RunLimits: ...

    @property
    def usage(self) -> RunUsage: ...


@dataclass(frozen=True, slots=True)
class AgentAnswer:
    """How a run ended.

    Attributes:
        message: the final assistant message (``content``; ``tool_calls`` when the client's
            tools, or a call awaiting approval, are returned).
        finish_reason: the chat ``finish_reason`` to report (``stop``, ``length``,
            ``tool_calls``).
        stop_reason: why the run ended.
    """

    message: Mapping[str, Any]
    finish_reason: str = "stop"
    stop_reason: StopReason = "answered"


@dataclass(frozen=True, slots=True)
class DeltaEvent:
    """A piece of the answer for the client, as a chat ``delta`` (``content``, ``tool_calls``)."""

    delta: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StepEvent:
    """Step ``number`` starts, on model ``model`` (chosen for ``route``, if the agent routes)."""

    number: int
    model: str
    route: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """The agent calls tool ``name`` with ``arguments`` (JSON text); ``call_id`` pairs it with
    its result."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    """Tool call ``call_id`` returned ``result`` after ``seconds``."""

    call_id: str
    name: str
    result: ToolResult
    seconds: float


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """The run is over: the last event of a stream."""

    answer: AgentAnswer


AgentEvent: TypeAlias = DeltaEvent | StepEvent | ToolCallEvent | ToolResultEvent | DoneEvent
"""One event of a streamed run. Deltas reach the client as chunks of the answer; tool and step
events as SSE comment lines (which every SDK ignores; ``docs/agents.md``)."""


@runtime_checkable
class Agent(Protocol):
    """Answers a chat request, using models and tools as it sees fit."""

    async def run(self, request: Mapping[str, Any], session: AgentSession) -> AgentAnswer:
        """Answer ``request`` (an OpenAI chat request body: ``messages``, and the client's own
        ``tools`` if any).

        Raises:
            gateway.errors.GatewayError: the run cannot go on (a step's model call failed, a
                limit or budget of the caller refused it); the client gets that error.
        """
        ...

    def stream(
        self, request: Mapping[str, Any], session: AgentSession
    ) -> AsyncIterator[AgentEvent]:
        """Answer ``request`` as events (an async generator) ending with a :class:`DoneEvent`.
        Closing the iterator early (the client left) must stop the run."""
        ...

    def models(self) -> Sequence[str]:
        """The model groups, agents or workflows this agent may call (checked when the gateway
        starts: each must exist, and agents may not call each other in a cycle)."""
        ...


AgentFactory: TypeAlias = Callable[..., Agent]
"""What ``register_agents`` registers: an agent *type*, called once per configured agent as
``factory(settings, directory)`` with its settings (``gateway.settings_agents.AgentSettings``,
or ``WorkflowSettings`` for the ``workflow`` type; type-specific ones in ``options``) and a
``gateway.agents.routing.ModelDirectory``. ``TypeError``/``ValueError`` become config errors
naming the agent."""
