"""Agent metrics: runs and why they stopped, steps by model and route, tool calls, and the
gateway's own time per step.

Labels stay bounded: the agent, the model group, the tool and the route policy's reason class
(``fixed``, ``local_only``, ``complexity``, ``cost``), never a request's text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.telemetry.metrics import LabelledChildren

_STEP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
_TOOL_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


class AgentMetrics:
    """The agent series of one app, registered in its registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self._children = LabelledChildren()
        self.runs = Counter(
            "gateway_agent_runs",
            "Agent and workflow runs, by why they stopped.",
            ["agent", "stop_reason"],
            registry=r,
        )
        self.steps = Counter(
            "gateway_agent_steps",
            "Model calls made by agent runs, by the model chosen and why.",
            ["agent", "model", "route"],
            registry=r,
        )
        self.tool_calls = Counter(
            "gateway_agent_tool_calls",
            "Tool calls executed by agent runs, by outcome (ok, error, approval).",
            ["agent", "tool", "outcome"],
            registry=r,
        )
        self.tool_seconds = Histogram(
            "gateway_agent_tool_seconds",
            "Time one tool call took.",
            ["agent", "tool"],
            buckets=_TOOL_BUCKETS,
            registry=r,
        )
        self.overhead_seconds = Histogram(
            "gateway_agent_overhead_seconds_per_step",
            "The gateway's own time per step of a run: the run's time less its model and tool "
            "time, divided by its steps.",
            ["agent"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )

    def run_ended(self, agent: str, stop_reason: str, steps: int, overhead_s: float) -> None:
        c = self._children
        c.get(self.runs, agent, stop_reason).inc()
        if steps:
            c.get(self.overhead_seconds, agent).observe(max(overhead_s, 0.0) / steps)

    def step(self, agent: str, model: str, route: str | None) -> None:
        reason = (route or "fixed").split(";", 1)[0].split("=", 1)[0].strip() or "fixed"
        self._children.get(self.steps, agent, model, reason).inc()

    def tool_call(self, agent: str, tool: str, outcome: str, seconds: float) -> None:
        c = self._children
        c.get(self.tool_calls, agent, tool, outcome).inc()
        c.get(self.tool_seconds, agent, tool).observe(seconds)
