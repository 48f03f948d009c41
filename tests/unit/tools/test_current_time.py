"""The ``current_time`` tool: the clock's instant, in the IANA zone asked for, exactly."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jsonschema
import pytest
from gateway_tools.clock_tool import CurrentTimeTool

from gateway.tools.base import ToolResult
from tests.unit.tools.tool_support import tool_context

pytestmark = pytest.mark.anyio

NEW_YEAR_2027 = 1_798_761_600.0  # 2027-01-01T00:00:00Z
JULY_2026_NOON = 1_782_907_200.0  # 2026-07-01T12:00:00Z (summer time north of the equator)


async def current_time(arguments: Mapping[str, Any], at: float) -> ToolResult:
    return await CurrentTimeTool(clock=lambda: at).call(arguments, tool_context())


@pytest.mark.parametrize(
    ("zone", "at", "iso"),
    [
        ("UTC", NEW_YEAR_2027, "2027-01-01T00:00:00+00:00"),
        ("Asia/Tokyo", NEW_YEAR_2027, "2027-01-01T09:00:00+09:00"),
        ("Asia/Kolkata", NEW_YEAR_2027, "2027-01-01T05:30:00+05:30"),
        ("America/New_York", NEW_YEAR_2027, "2026-12-31T19:00:00-05:00"),
        ("America/New_York", JULY_2026_NOON, "2026-07-01T08:00:00-04:00"),
        ("Europe/Paris", NEW_YEAR_2027, "2027-01-01T01:00:00+01:00"),
        ("Europe/Paris", JULY_2026_NOON, "2026-07-01T14:00:00+02:00"),
        ("Australia/Sydney", JULY_2026_NOON, "2026-07-01T22:00:00+10:00"),
    ],
)
async def test_gives_the_local_time_in_the_zone(zone: str, at: float, iso: str) -> None:
    result = await current_time({"timezone": zone}, at + 0.25)

    assert not result.is_error, result.content
    assert result.content == {"iso": iso, "unix": at + 0.25, "timezone": zone}


async def test_defaults_to_utc() -> None:
    result = await current_time({}, NEW_YEAR_2027)

    assert result.content == {
        "iso": "2027-01-01T00:00:00+00:00",
        "unix": NEW_YEAR_2027,
        "timezone": "UTC",
    }


@pytest.mark.parametrize(
    "zone",
    [
        "Mars/Olympus_Mons",
        "Europe/Pariss",
        "America",
        "../etc/passwd",
        "/etc/localtime",
        "",
        "Europe/Paris\x00",
        "x" * 300,
    ],
)
async def test_an_unknown_zone_is_an_error_naming_it(zone: str) -> None:
    result = await current_time({"timezone": zone}, NEW_YEAR_2027)

    assert result.is_error
    assert isinstance(result.content, str)
    assert result.content.startswith(f"unknown time zone {zone!r}")
    assert "Europe/Paris" in result.content  # an example of a valid name


async def test_a_zone_that_is_not_a_string_is_an_error() -> None:
    result = await current_time({"timezone": 1}, NEW_YEAR_2027)

    assert result.is_error
    assert "timezone must be a string" in str(result.content)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"timezone": 1}, CurrentTimeTool().parameters)
    jsonschema.validate({}, CurrentTimeTool().parameters)


async def test_reads_the_clock_at_each_call() -> None:
    instants = iter([NEW_YEAR_2027, JULY_2026_NOON])
    tool = CurrentTimeTool(clock=lambda: next(instants))

    first = await tool.call({}, tool_context())
    second = await tool.call({}, tool_context())

    assert first.content == {
        "iso": "2027-01-01T00:00:00+00:00",
        "unix": NEW_YEAR_2027,
        "timezone": "UTC",
    }
    assert second.content == {
        "iso": "2026-07-01T12:00:00+00:00",
        "unix": JULY_2026_NOON,
        "timezone": "UTC",
    }


async def test_uses_the_system_clock_by_default() -> None:
    before = time.time()
    result = await CurrentTimeTool().call({"timezone": "UTC"}, tool_context())
    after = time.time()

    assert isinstance(result.content, dict)
    assert before <= result.content["unix"] <= after
