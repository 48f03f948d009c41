"""The tools of a run: argument checks, time limits and failures turned into error results, and
the catalog that resolves an agent's ``tools`` list (registered tools and tool sources)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import pytest
from gateway_tools.calculator import CalculatorTool
from gateway_tools.clock_tool import CurrentTimeTool

from gateway.agents.base import ToolCall
from gateway.errors import ServiceUnavailableError
from gateway.settings_agents import ToolUse
from gateway.tools.base import Tool, ToolContext, ToolResult, ToolSource
from gateway.tools.toolbox import OfferedTool, RunToolBox, ToolCatalog, wire_name
from tests.unit.agents.agent_support import Contexts, offered, toolbox

pytestmark = pytest.mark.anyio

_OBJECT: Mapping[str, Any] = {"type": "object", "properties": {}}


class RaisingTool:
    name = "raising"
    description = "Always fails."
    parameters: Mapping[str, Any] = _OBJECT

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        raise RuntimeError("the tool broke")


class SleepingTool:
    """Returns only once ``release`` is set (never, in these tests)."""

    name = "sleeping"
    description = "Waits."
    parameters: Mapping[str, Any] = _OBJECT

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.cancelled = False

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        return ToolResult("woke")


class OwnTimeoutTool:
    """Fails with a timeout of its own (an upstream it waited on), well within the gateway's."""

    name = "own_timeout"
    description = "Times out on its own."
    parameters: Mapping[str, Any] = _OBJECT

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        raise TimeoutError("the weather service did not answer")


class NoResultTool:
    name = "no_result"
    description = "Returns something that is not a ToolResult."
    parameters: Mapping[str, Any] = _OBJECT

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> Any:
        return "plain text"


class NamedTool:
    """A tool called ``name`` with ``parameters``, answering its arguments back."""

    description = "Echoes."

    def __init__(self, name: str, parameters: Mapping[str, Any] = _OBJECT) -> None:
        self.name = name
        self.parameters = parameters

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        return ToolResult({"tool": self.name, "arguments": dict(arguments)})


def call(name: str, arguments: str = "{}", call_id: str = "call_1") -> ToolCall:
    return ToolCall(call_id, name, arguments)


def error_text(result: ToolResult) -> str:
    assert result.is_error, result.content
    assert isinstance(result.content, str)
    return result.content


# -- RunToolBox ---------------------------------------------------------------------------------


async def test_a_valid_call_runs_the_tool() -> None:
    contexts = Contexts()
    box = RunToolBox([offered(CalculatorTool())], contexts, time.monotonic() + 30)

    result = await box.call(call("calculator", '{"expression": "6 * 7"}', "call_x"))

    assert not result.is_error
    assert result.content == {"expression": "6 * 7", "result": 42}
    assert [c.call_id for c in contexts.made] == ["call_x"]


async def test_the_box_describes_and_owns_its_tools() -> None:
    box = toolbox([offered(CalculatorTool()), offered(CurrentTimeTool(), require_approval=True)])

    assert [s["function"]["name"] for s in box.specs()] == ["calculator", "current_time"]
    assert box.specs()[0]["type"] == "function"
    assert box.specs()[0]["function"]["parameters"] == dict(CalculatorTool.parameters)
    assert box.owns("calculator")
    assert not box.owns("weather")
    assert box.needs_approval("current_time")
    assert not box.needs_approval("calculator")
    assert not box.needs_approval("weather")


async def test_an_unknown_tool_is_an_error_result() -> None:
    result = await toolbox([offered(CalculatorTool())]).call(call("weather"))

    assert "Unknown tool `weather`" in error_text(result)


@pytest.mark.parametrize("arguments", ['{"expression": ', "not json", "{'a': 1}"])
async def test_invalid_json_is_an_error_result(arguments: str) -> None:
    result = await toolbox([offered(CalculatorTool())]).call(call("calculator", arguments))

    assert "not valid JSON" in error_text(result)


@pytest.mark.parametrize("arguments", ["[1, 2]", '"2+2"', "42", "null"])
async def test_json_that_is_not_an_object_is_an_error_result(arguments: str) -> None:
    result = await toolbox([offered(CalculatorTool())]).call(call("calculator", arguments))

    assert error_text(result) == "The arguments must be a JSON object."


async def test_blank_arguments_are_an_empty_object() -> None:
    result = await toolbox([offered(CurrentTimeTool())]).call(call("current_time", "  "))

    assert not result.is_error, result.content
    assert isinstance(result.content, dict)
    assert result.content["timezone"] == "UTC"


async def test_a_schema_violation_names_the_path() -> None:
    box = toolbox([offered(CalculatorTool())])

    wrong_type = error_text(await box.call(call("calculator", '{"expression": 5}')))
    missing = error_text(await box.call(call("calculator", "{}")))
    extra = error_text(await box.call(call("calculator", '{"expression": "1", "x": 2}')))

    assert wrong_type.startswith("Invalid arguments for `calculator` at expression:")
    assert "is not of type 'string'" in wrong_type
    assert missing.startswith("Invalid arguments for `calculator` at arguments:")
    assert "'expression' is a required property" in missing
    assert "additional" in extra.lower()


async def test_a_nested_schema_violation_names_the_nested_path() -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
    }
    box = toolbox([offered(NamedTool("numbers", schema))])

    text = error_text(await box.call(call("numbers", '{"items": [1, "two"]}')))

    assert text.startswith("Invalid arguments for `numbers` at items/1:")


async def test_a_timeout_is_an_error_result_and_cancels_the_tool() -> None:
    sleeping = SleepingTool()
    box = toolbox([offered(sleeping, timeout_s=0.05)])

    with anyio.fail_after(10):
        result = await box.call(call("sleeping"))

    assert "`sleeping` timed out after" in error_text(result)
    assert sleeping.cancelled


async def test_a_tools_own_timeout_is_its_failure_not_the_gateways() -> None:
    box = toolbox([offered(OwnTimeoutTool(), timeout_s=30)])

    result = await box.call(call("own_timeout"))

    assert "`own_timeout` failed: it timed out: the weather service" in error_text(result)
    assert "timed out after" not in error_text(result)


async def test_the_run_deadline_bounds_a_call_below_its_timeout() -> None:
    sleeping = SleepingTool()
    contexts = Contexts()
    box = RunToolBox([offered(sleeping, timeout_s=600)], contexts, time.monotonic() + 0.05)

    with anyio.fail_after(10):
        result = await box.call(call("sleeping"))

    assert "timed out" in error_text(result)
    # The tool was told the run's deadline, not its own (ten minutes away).
    assert contexts.made[0].deadline < time.monotonic() + 1


async def test_an_exception_is_an_error_result() -> None:
    result = await toolbox([offered(RaisingTool())]).call(call("raising"))

    assert error_text(result) == "`raising` failed: RuntimeError: the tool broke"


async def test_a_result_that_is_not_a_tool_result_is_an_error() -> None:
    result = await toolbox([offered(NoResultTool())]).call(call("no_result"))

    assert error_text(result) == "`no_result` returned no result."


async def test_no_call_once_the_deadline_has_passed() -> None:
    contexts = Contexts()
    box = RunToolBox([offered(CalculatorTool())], contexts, time.monotonic() - 1)

    result = await box.call(call("calculator", '{"expression": "1"}'))

    assert "No time was left to call `calculator`" in error_text(result)
    assert contexts.made == []  # the tool was never called


async def test_observe_is_told_every_outcome() -> None:
    seen: list[tuple[str, str]] = []

    def observe(tool: str, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        seen.append((tool, outcome))

    box = toolbox(
        [offered(CalculatorTool()), offered(RaisingTool()), offered(CurrentTimeTool())],
        observe=observe,
    )

    await box.call(call("calculator", '{"expression": "1 + 1"}'))
    await box.call(call("calculator", '{"expression": "1 / 0"}'))  # the tool's own error
    await box.call(call("raising"))
    await box.call(call("calculator", "[]"))
    await box.call(call("weather"))

    assert seen == [
        ("calculator", "ok"),
        ("calculator", "error"),
        ("raising", "error"),
        ("calculator", "error"),
        ("unknown", "error"),  # a name no tool has: metric labels stay bounded
    ]


async def test_a_sealed_call_is_approved_and_a_forged_or_changed_one_is_not() -> None:
    box = toolbox([offered(CalculatorTool(), require_approval=True)])
    original = call("calculator", '{"expression": "6 * 7"}')

    sealed = box.pending(original)

    assert sealed.id.startswith(original.id + "-")
    assert box.approved(sealed)
    assert not box.approved(original)  # written by the client, never returned
    changed = ToolCall(sealed.id, sealed.name, '{"expression": "9 ** 9"}')
    assert not box.approved(changed)  # the arguments were changed
    other = toolbox([offered(CalculatorTool())], seal_key=b"another replica's key")
    assert not other.approved(sealed)


async def test_a_long_result_is_cut_for_the_model() -> None:
    tool = NamedTool("echo")
    box = toolbox([OfferedTool.of(tool, "echo", ToolUse(name="echo", max_result_chars=100))])

    result = await box.call(call("echo", json.dumps({"text": "x" * 1000})))

    assert len(result.text()) < 200
    assert "[cut: the result was" in result.text()


async def test_nested_or_oversized_arguments_are_error_results() -> None:
    box = toolbox([offered(CalculatorTool())])

    nested = await box.call(call("calculator", "[" * 100_000))
    huge = await box.call(call("calculator", json.dumps({"expression": "1" * 300_000})))

    assert "nested too deeply" in error_text(nested)
    assert "longer than" in error_text(huge)


# -- OfferedTool --------------------------------------------------------------------------------


def test_wire_names_replace_dots() -> None:
    assert wire_name("calculator") == "calculator"
    assert wire_name("docs.search") == "docs__search"


def test_a_source_tool_is_offered_under_its_wire_name() -> None:
    tool = OfferedTool.of(NamedTool("search"), "docs.search", ToolUse(name="docs.search"))

    assert tool.wire == "docs__search"
    assert tool.spec()["function"]["name"] == "docs__search"


@pytest.mark.parametrize("name", ["has space", "x" * 65, "", "ünïcode", "a/b"])
def test_a_name_a_model_cannot_call_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be offered to a model"):
        OfferedTool.of(NamedTool(name), name, ToolUse(name=name or "x"))


def test_an_invalid_schema_is_refused() -> None:
    tool = NamedTool("broken", {"type": "no-such-type"})

    with pytest.raises(ValueError, match="invalid parameters schema"):
        OfferedTool.of(tool, "broken", ToolUse(name="broken"))


def test_a_tool_without_parameters_takes_any_object() -> None:
    spec = OfferedTool.of(NamedTool("bare", {}), "bare", ToolUse(name="bare")).spec()

    assert spec["function"]["parameters"] == {"type": "object", "properties": {}}


# -- ToolCatalog --------------------------------------------------------------------------------


class FakeSource:
    """A :class:`ToolSource` whose list the test sets, and which can be made unavailable."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self.tools = list(tools)
        self.available = True
        self.listed = 0
        self.closed = False

    async def list_tools(self) -> Sequence[Tool]:
        self.listed += 1
        if not self.available:
            raise ServiceUnavailableError("the source is down")
        return list(self.tools)

    async def aclose(self) -> None:
        self.closed = True


def catalog(sources: Mapping[str, ToolSource] | None = None, ttl_s: float = 60.0) -> ToolCatalog:
    registered: dict[str, Tool] = {
        "calculator": CalculatorTool(),
        "current_time": CurrentTimeTool(),
    }
    return ToolCatalog(registered, sources, ttl_s=ttl_s)


def test_the_fake_source_is_a_tool_source() -> None:
    assert isinstance(FakeSource([]), ToolSource)


def test_offer_resolves_registered_tools_with_their_terms() -> None:
    static, dynamic = catalog().offer(
        ["calculator", ToolUse(name="current_time", require_approval=True, timeout_s=2.0)]
    )

    assert [t.name for t in static] == ["calculator", "current_time"]
    assert static[0].timeout_s == 30.0
    assert not static[0].require_approval
    assert static[1].require_approval
    assert static[1].timeout_s == 2.0
    assert dynamic == []


def test_offer_refuses_an_unknown_tool() -> None:
    with pytest.raises(ValueError, match="unknown tool `weather`; registered: calculator"):
        catalog().offer(["weather"])
    with pytest.raises(ValueError, match=r"unknown tool `nosource\.search`"):
        catalog({"docs": FakeSource([])}).offer(["nosource.search"])


def test_star_offers_every_registered_tool_with_its_terms() -> None:
    static, dynamic = catalog().offer([ToolUse(name="*", timeout_s=3.0, require_approval=True)])

    assert sorted(t.name for t in static) == ["calculator", "current_time"]
    assert all(t.timeout_s == 3.0 for t in static)
    assert all(t.require_approval for t in static)
    assert dynamic == []


def test_source_tools_are_left_for_run_time() -> None:
    uses: list[str | ToolUse] = ["docs.search", ToolUse(name="docs.*", timeout_s=1.0), "calculator"]

    static, dynamic = catalog({"docs": FakeSource([])}).offer(uses)

    assert [t.name for t in static] == ["calculator"]
    assert [u.name for u in dynamic] == ["docs.search", "docs.*"]
    assert dynamic[1].timeout_s == 1.0


async def test_offer_sources_lists_the_tools_named() -> None:
    source = FakeSource([NamedTool("search"), NamedTool("fetch")])
    tools = catalog({"docs": source})

    one = await tools.offer_sources([ToolUse(name="docs.search", require_approval=True)])
    every = await tools.offer_sources([ToolUse(name="docs.*")])
    missing = await tools.offer_sources([ToolUse(name="docs.absent")])

    assert [(t.name, t.wire, t.require_approval) for t in one] == [
        ("docs.search", "docs__search", True)
    ]
    assert sorted(t.wire for t in every) == ["docs__fetch", "docs__search"]
    assert missing == []
    assert source.listed == 1  # listed once, then trusted for the TTL


async def test_offered_source_tools_run_in_a_toolbox() -> None:
    tools = catalog({"docs": FakeSource([NamedTool("search")])})
    offered_tools = await tools.offer_sources([ToolUse(name="docs.search")])

    result = await toolbox(offered_tools).call(call("docs__search", '{"q": "x"}'))

    assert result.content == {"tool": "search", "arguments": {"q": "x"}}


async def test_a_source_tool_that_cannot_be_offered_is_left_out() -> None:
    source = FakeSource([NamedTool("bad name"), NamedTool("good")])

    offered_tools = await catalog({"docs": source}).offer_sources([ToolUse(name="docs.*")])

    assert [t.wire for t in offered_tools] == ["docs__good"]


async def test_an_unavailable_source_keeps_its_last_good_list() -> None:
    source = FakeSource([NamedTool("search")])
    tools = catalog({"docs": source}, ttl_s=0.0)
    await tools.start()
    assert source.listed == 1

    source.available = False
    source.tools = []
    during = await tools.source_tools("docs")

    assert list(during) == ["search"]
    assert source.listed == 2  # it was asked again, and failed

    source.available = True
    after = await tools.source_tools("docs")
    assert after == {}


async def test_a_source_never_reached_offers_nothing_until_it_answers() -> None:
    source = FakeSource([NamedTool("search")])
    source.available = False
    tools = catalog({"docs": source}, ttl_s=0.0)  # no back-off: asked again at once
    await tools.start()

    assert await tools.offer_sources([ToolUse(name="docs.*")]) == []

    source.available = True
    recovered = await tools.offer_sources([ToolUse(name="docs.*")])
    assert [t.wire for t in recovered] == ["docs__search"]


async def test_an_unreachable_source_is_not_asked_on_every_request() -> None:
    source = FakeSource([NamedTool("search")])
    source.available = False
    tools = catalog({"docs": source})
    await tools.start()
    asked = source.listed

    for _ in range(5):
        assert await tools.offer_sources([ToolUse(name="docs.*")]) == []

    assert source.listed == asked  # backed off


async def test_aclose_closes_every_source() -> None:
    first, second = FakeSource([]), FakeSource([])

    await catalog({"a": first, "b": second}).aclose()

    assert first.closed
    assert second.closed


def test_results_turn_into_tool_message_text() -> None:
    assert ToolResult("plain").text() == "plain"
    assert json.loads(ToolResult({"a": [1, 2]}).text()) == {"a": [1, 2]}
