"""The ``gateway_tools`` plugin registers each built-in tool under its own name."""

from __future__ import annotations

import gateway_tools
from gateway_tools.calculator import CalculatorTool
from gateway_tools.clock_tool import CurrentTimeTool
from gateway_tools.http_request import HttpRequestTool

from gateway.plugins import collect_registries, make_plugin_manager
from gateway.tools.base import Tool


def test_the_plugin_registers_every_builtin_tool_under_its_name() -> None:
    # Only this plugin (its entry point is in pyproject.toml): loading them all takes seconds.
    pm = make_plugin_manager(entry_points=False, extra=[("tools", gateway_tools)])

    registries = collect_registries(pm)

    assert registries.tools.names() == ["calculator", "current_time", "http_request"]
    assert isinstance(registries.tools.get("calculator"), CalculatorTool)
    assert isinstance(registries.tools.get("current_time"), CurrentTimeTool)
    assert isinstance(registries.tools.get("http_request"), HttpRequestTool)
    for name, tool in registries.tools.items():
        assert isinstance(tool, Tool)
        assert tool.name == name
        assert registries.tools.owner(name) == "tools"
