"""Built-in plugin: the tools ``calculator``, ``current_time`` and ``http_request``."""

from gateway import hookimpl
from gateway.hookspecs import RegisterTool
from gateway.tools.base import Tool
from gateway_tools.calculator import CalculatorTool
from gateway_tools.clock_tool import CurrentTimeTool
from gateway_tools.http_request import HttpRequestTool


def builtin_tools() -> tuple[Tool, ...]:
    """A fresh instance of every built-in tool; adding a tool is one line here."""
    return (CalculatorTool(), CurrentTimeTool(), HttpRequestTool())


@hookimpl
def register_tools(register: RegisterTool) -> None:
    """Register every tool of :func:`builtin_tools` under its own name."""
    for tool in builtin_tools():
        register(tool.name, tool)
