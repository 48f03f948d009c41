"""The ``current_time`` tool: what time it is, in a time zone the model names.

A model knows nothing after its training data, not even the date; this tool tells it, from the
gateway's clock, in any IANA zone (``zoneinfo``, with the system's or ``tzdata``'s database).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.tools.base import ToolContext, ToolResult


class CurrentTimeTool:
    """The ``current_time`` tool: ``{"timezone"?: "Europe/Paris"}`` -> ``{"iso", "unix",
    "timezone"}``.

    ``iso`` is the local time in the zone, to the second, with its UTC offset
    (``2026-12-01T16:43:29+01:00``); ``unix`` is the same instant in seconds since the epoch
    (a float). An unknown zone is an error result naming it.

    Args:
        clock: the source of the time (seconds since the epoch); tests pass a fixed one.
    """

    name = "current_time"
    description = (
        "Get the current date and time, in a time zone given by its IANA name "
        "(e.g. Europe/Paris, America/New_York; default UTC)."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "description": "IANA time zone name, e.g. Asia/Tokyo. Default: UTC.",
                "default": "UTC",
                "maxLength": 64,
            }
        },
        "additionalProperties": False,
    }

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        """Read the clock and express the instant in ``arguments["timezone"]`` (UTC if absent)."""
        name = arguments.get("timezone", "UTC")
        if not isinstance(name, str):
            return ToolResult("timezone must be a string, such as Europe/Paris", is_error=True)
        zone = _zone(name)
        if zone is None:
            return ToolResult(
                f"unknown time zone {name!r}: give an IANA name such as UTC, Europe/Paris or "
                "America/New_York",
                is_error=True,
            )
        now = self._clock()
        local = datetime.fromtimestamp(now, UTC).astimezone(zone)
        return ToolResult(
            {"iso": local.isoformat(timespec="seconds"), "unix": now, "timezone": name}
        )


def _zone(name: str) -> ZoneInfo | None:
    """The zone called ``name``, or None when there is none (or the name is not a zone key)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: not a zone key (an absolute path, "..", a NUL byte) or a file under the
        # zone directory that is no zone; OSError: a directory ("America"), a name too long.
        return None
