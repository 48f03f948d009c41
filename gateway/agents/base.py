"""Contracts for tools (``register_tools``) and agents (``register_agents``).

A tool is a function a model may call; the gateway can execute registered tools server-side.
An agent is a loop that drives a model and tools to answer a request; it is exposed as a model name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Tool(Protocol):
    """A callable tool, described by a JSON Schema for its arguments.

    Attributes:
        name: the function name the model calls.
        description: what it does, shown to the model.
        parameters: JSON Schema of the arguments object.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]

    async def call(self, arguments: Mapping[str, Any]) -> str:
        """Run the tool and return its result as text for the model."""
        ...


class ChatClient(Protocol):
    """How an agent calls models: through the gateway's own dispatch."""

    async def chat(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        """Send an OpenAI chat-completions request body; return the response body."""
        ...


@runtime_checkable
class Agent(Protocol):
    """Answers a chat request, using models and tools as it sees fit."""

    async def run(self, request: Mapping[str, Any], client: ChatClient) -> Mapping[str, Any]:
        """Return an OpenAI chat-completion response body for ``request``."""
        ...


class AgentFactory(Protocol):
    """What ``register_agents`` registers; called with the agent's config options."""

    def __call__(self, **options: Any) -> Agent: ...
