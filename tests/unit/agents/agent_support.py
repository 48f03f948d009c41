"""What the agent unit tests share: tool contexts, a run's tool box, and a session.

The session is a plain object satisfying :class:`gateway.agents.base.AgentSession`; its model
client is whatever the test scripts, its tools a real :class:`RunToolBox`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.agents.base import ModelClient, RunLimits, RunUsage, ToolBox, ToolCall
from gateway.identity import ANONYMOUS, Principal
from gateway.settings_agents import ToolUse
from gateway.tools.base import Tool, ToolContext
from gateway.tools.toolbox import OfferedTool, RunToolBox
from tests.unit.tools.tool_support import NoNetwork


@dataclass
class Contexts:
    """Builds each call's :class:`ToolContext` (a ``ContextFor``) and keeps them."""

    made: list[ToolContext] = field(default_factory=list)

    def __call__(self, call: ToolCall, deadline: float) -> ToolContext:
        context = ToolContext(
            principal=ANONYMOUS,
            deadline=deadline,
            request_id="req-test",
            call_id=call.id,
            agent="test-agent",
            log=logging.getLogger("gateway.tools.test"),
            http=NoNetwork(),
        )
        self.made.append(context)
        return context


def offered(tool: Tool, *, timeout_s: float = 5.0, require_approval: bool = False) -> OfferedTool:
    """``tool`` offered under its own name."""
    use = ToolUse(name=tool.name, timeout_s=timeout_s, require_approval=require_approval)
    return OfferedTool.of(tool, tool.name, use)


def toolbox(
    tools: Sequence[OfferedTool],
    *,
    seconds: float = 30.0,
    observe: Callable[[str, str, float], None] | None = None,
    seal_key: bytes = b"",
) -> RunToolBox:
    """A run's tool box whose deadline is ``seconds`` from now (negative: already past)."""
    return RunToolBox(
        tools, Contexts(), time.monotonic() + seconds, observe=observe, seal_key=seal_key
    )


def limits(
    *,
    max_steps: int = 10,
    seconds: float = 60.0,
    max_cost_nanos: int | None = None,
    max_tokens: int | None = None,
) -> RunLimits:
    """Run limits whose deadline is ``seconds`` from now (negative: already past)."""
    return RunLimits(max_steps, time.monotonic() + seconds, max_cost_nanos, max_tokens)


@dataclass
class Session:
    """An :class:`gateway.agents.base.AgentSession` of plain attributes."""

    models: ModelClient
    tools: ToolBox
    limits: RunLimits
    name: str = "test-agent"
    principal: Principal = ANONYMOUS
    request_id: str = "req-test"
    usage: RunUsage = field(default_factory=RunUsage)


@dataclass(frozen=True)
class Facts:
    """What a :class:`Directory` says of one model group."""

    local: bool = False
    window: int = 0
    price: float = 0.0
    tools: bool = True


@dataclass
class Directory:
    """A :class:`gateway.agents.routing.ModelDirectory` over a table of facts."""

    facts: Mapping[str, Facts] = field(default_factory=dict)

    def exists(self, model: str) -> bool:
        return model in self.facts

    def is_local(self, model: str) -> bool:
        return self.facts[model].local

    def context_window(self, model: str) -> int:
        return self.facts[model].window

    def price_per_mtok(self, model: str) -> float:
        return self.facts[model].price

    def supports_tools(self, model: str) -> bool:
        return self.facts[model].tools
