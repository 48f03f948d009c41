"""The config sections of agents, tools, guardrails and workflows (part of
:mod:`gateway.settings`, kept apart so that each file holds one idea).

Unknown keys are rejected, as everywhere in the config.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from gateway.settings_base import NonNegativeFloat, PositiveFloat, _Config

Name = Annotated[str, msgspec.Meta(min_length=1)]


class ToolUse(_Config):
    """A tool an agent (or a model group's server-side execution) offers its model.

    Attributes:
        name: a registered tool (``calculator``), or a tool source's (``docs.search``), or
            ``<source>.*`` for every tool of a source.
        require_approval: a call to it is not executed: the run stops and returns the pending
            call to the client (``finish_reason: tool_calls``), who approves by sending it back.
        timeout_s: the most one call may take (the run's deadline bounds it too).
        max_result_chars: a longer result is cut there (with a note saying so) before the
            model reads it: every later step sends it again.
    """

    name: Name
    require_approval: bool = False
    timeout_s: PositiveFloat = 30.0
    max_result_chars: Annotated[int, msgspec.Meta(ge=100)] = 50_000


class NetworkSettings(_Config):
    """Where the tools of one agent may connect (``http_request``, and any tool using
    ``ToolContext.http``). Deny by default.

    Attributes:
        allow_domains: host names that may be reached (``api.example.com``; ``*.example.com``
            for its subdomains; ``*`` for any public host). Empty: none.
        allow_addresses: CIDR ranges deliberately opened although not public (an internal
            service: ``10.1.2.0/24``); cloud metadata addresses stay refused.
        max_response_bytes: the most of a response body a tool reads.
        timeout_s: the most one request (with its redirects) may take.
        max_redirects: redirects followed, each re-checked.
    """

    allow_domains: list[str] = msgspec.field(default_factory=list)
    allow_addresses: list[str] = msgspec.field(default_factory=list)
    max_response_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1024 * 1024
    timeout_s: PositiveFloat = 10.0
    max_redirects: Annotated[int, msgspec.Meta(ge=0, le=20)] = 5


class TierSettings(_Config):
    """A model tier of an agent's routing policy.

    Attributes:
        model: a model group.
        max_complexity: the most complex request (0 to 1, see ``gateway.agents.routing``) the
            tier serves under the ``complexity`` policy.
    """

    model: Name
    max_complexity: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0


class AgentRoutingSettings(_Config):
    """How an agent picks the model of each step.

    Attributes:
        privacy: ``local_only`` never lets a step reach a backend not marked ``local`` (a hard
            gate, checked before cost or complexity and again at dispatch); ``any`` does not
            restrict.
        policy: ``fixed`` (the agent's ``model``), ``complexity`` (the first tier whose
            ``max_complexity`` covers the step's complexity) or ``cost`` (the cheapest tier that
            fits: context window, tool support).
        tiers: the candidate models, cheapest or smallest first.
    """

    privacy: Literal["any", "local_only"] = "any"
    policy: Literal["fixed", "complexity", "cost"] = "fixed"
    tiers: list[TierSettings] = msgspec.field(default_factory=list)


class AgentSettings(_Config):
    """An agent, served as a model name.

    Attributes:
        name: the model name clients send.
        type: a registered agent type (``tool_loop``: the built-in tool-calling loop).
        model: the model group (or agent) its steps call, unless ``routing`` picks per step.
        instructions: the system prompt, placed before the client's messages.
        tools: the tools it may call (names, or :class:`ToolUse` entries).
        max_steps: model calls per run (each step is one).
        max_seconds: the longest a run may take (None: the model group's total timeout).
        max_cost_usd: the most one run may cost, over every step (None: no limit).
        max_tokens: prompt plus completion tokens over every step (None: no limit).
        tool_choice: sent to the model with the tools (``auto`` when unset).
        parallel_tool_calls: whether the model may ask for several calls at once (they run
            concurrently).
        routing: per-step model choice.
        network: where its tools may connect.
        guardrails: ``guardrails`` names applied to the agent's requests and answers.
        owned_by: reported by ``/v1/models``.
        options: type-specific settings for third-party agent types.
    """

    name: Name
    type: str = "tool_loop"
    model: str | None = None
    instructions: str = ""
    tools: list[str | ToolUse] = msgspec.field(default_factory=list)
    max_steps: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    max_seconds: PositiveFloat | None = None
    max_cost_usd: NonNegativeFloat | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool = True
    routing: AgentRoutingSettings | None = None
    network: NetworkSettings = msgspec.field(default_factory=NetworkSettings)
    guardrails: list[str] = msgspec.field(default_factory=list)
    owned_by: str = "gateway"
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class WorkflowStep(_Config):
    """One step of a workflow: exactly one of ``agent``, ``sequential``, ``parallel``, ``loop``.

    Attributes:
        agent: an agent (or model) to call with the step's input.
        sequential: steps run one after another, each one's output the next one's input.
        parallel: steps run concurrently on the same input; their outputs are joined (or
            named, for a later ``input`` template).
        loop: steps repeated, each pass's output the next pass's input, up to
            ``max_iterations`` or until an output contains ``until``.
        max_iterations: passes of a ``loop``.
        until: a loop ends early when a pass's output contains this text.
        input: a template for the step's input: ``{input}`` is the previous output, ``{name}``
            the output of the step named ``name`` (``{request}``: the client's last message).
        output: a name under which this step's output is kept, for later templates.
    """

    agent: str | None = None
    sequential: list[WorkflowStep] | None = None
    parallel: list[WorkflowStep] | None = None
    loop: list[WorkflowStep] | None = None
    max_iterations: Annotated[int, msgspec.Meta(ge=1, le=50)] = 3
    until: str | None = None
    input: str | None = None
    output: str | None = None


class WorkflowSettings(_Config):
    """A workflow over agents, served as a model name, with one budget for the whole run.

    Attributes:
        name: the model name clients send.
        steps: run in sequence (wrap steps in ``parallel`` or ``loop`` for the others).
        max_steps: model calls over the whole run (every agent's steps count).
        max_seconds: the longest the run may take.
        max_cost_usd: the most the whole run may cost.
        max_tokens: tokens over the whole run.
        guardrails: ``guardrails`` names applied to its requests and answers.
        owned_by: reported by ``/v1/models``.
    """

    name: Name
    steps: Annotated[list[WorkflowStep], msgspec.Meta(min_length=1)]
    max_steps: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50
    max_seconds: PositiveFloat | None = None
    max_cost_usd: NonNegativeFloat | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    guardrails: list[str] = msgspec.field(default_factory=list)
    owned_by: str = "gateway"


class GuardrailSettings(_Config):
    """A configured guardrail: a registered type and its options (``guardrails.<name>``)."""

    type: Name
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class ToolSourceSettings(_Config):
    """A configured tool source (``tool_sources.<name>``): a registered type (``mcp``) and its
    options. Its tools are named ``<name>.<tool>``."""

    type: Name
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class ServerToolSettings(_Config):
    """Server-side tool execution for a plain model group (``tools: server``).

    Attributes:
        mode: ``client`` (the default: tool calls go back to the client, as from any model)
            or ``server`` (the gateway runs calls to the tools listed here and returns calls to
            the client's own tools to the client).
        tools: the registered tools offered (names or :class:`ToolUse` entries).
        max_steps: model calls per request.
        network: where those tools may connect.
    """

    mode: Literal["client", "server"] = "client"
    tools: list[str | ToolUse] = msgspec.field(default_factory=list)
    max_steps: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    network: NetworkSettings = msgspec.field(default_factory=NetworkSettings)
