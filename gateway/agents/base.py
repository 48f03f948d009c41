"""The agent contract (``register_agents``).

An agent is served as a model name: a request for it reaches :meth:`Agent.run` (or
:meth:`Agent.stream` when the client streams) instead of a provider. The agent calls models
through a :class:`ModelClient` bound to the caller, so each of its model calls goes through the
gateway's own pipeline (the caller's limits, budget, cache, guardrails and routing), and calls
tools (``gateway.tools``) as it sees fit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

from gateway.identity import Principal
from gateway.tools.base import ToolResult


class ModelClient(Protocol):
    """Calls models as the caller the agent serves, through the gateway's pipeline.

    Attributes:
        principal: the caller; every call is charged to their key and tenant.
    """

    @property
    def principal(self) -> Principal: ...

    async def chat(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        """Send an OpenAI chat-completions request body; return the response body.

        Raises:
            gateway.errors.GatewayError: as the client's own call would have failed.
        """
        ...

    def stream(self, request: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        """Send it as a stream; yield each ``chat.completion.chunk`` as it arrives."""
        ...


@dataclass(frozen=True, slots=True)
class ChunkEvent:
    """A ``chat.completion.chunk`` for the client, forwarded as it is."""

    chunk: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """The agent calls tool ``name`` with ``arguments`` (``call_id`` pairs it with its result)."""

    call_id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    """Tool call ``call_id`` returned ``result``."""

    call_id: str
    result: ToolResult


AgentEvent: TypeAlias = ChunkEvent | ToolCallEvent | ToolResultEvent
"""One step of a streamed agent run. Only chunks reach an OpenAI client; tool events are for
traces, metrics and clients that ask for them."""


@runtime_checkable
class Agent(Protocol):
    """Answers a chat request, using models and tools as it sees fit."""

    async def run(self, request: Mapping[str, Any], client: ModelClient) -> Mapping[str, Any]:
        """Return an OpenAI chat-completion response body for ``request``."""
        ...

    def stream(self, request: Mapping[str, Any], client: ModelClient) -> AsyncIterator[AgentEvent]:
        """Answer ``request`` as events (an async generator): the chunks of the answer, with the
        tool calls in between. The iterator's end is the end of the answer; closing it early
        (the client left) must stop the run."""
        ...


AgentFactory: TypeAlias = Callable[..., Agent]
"""What ``register_agents`` registers; called with the agent's config options as keyword
arguments (``TypeError``/``ValueError`` for bad ones become config errors)."""
