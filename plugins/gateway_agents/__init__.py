"""Built-in plugin: the agent types ``tool_loop`` (the tool-calling loop) and ``workflow``
(agents in sequence, in parallel and in loops)."""

from gateway import hookimpl
from gateway.agents.loop import ToolLoopAgent
from gateway.agents.workflow import WorkflowAgent
from gateway.hookspecs import RegisterAgent


@hookimpl
def register_agents(register: RegisterAgent) -> None:
    """Register ``tool_loop`` and ``workflow``."""
    register("tool_loop", ToolLoopAgent)
    register("workflow", WorkflowAgent)
