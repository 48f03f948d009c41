"""Turn msgspec validation messages into a field path and a problem, for error envelopes."""

from __future__ import annotations

import re

_AT_PATH = re.compile(r" - at `\$(.*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
# Checks in a Struct's __post_init__ carry no path; they start with the field's name instead.
_LEADING_FIELD = re.compile(r"`([A-Za-z_][\w.\[\]]*)` ")


def join_path(path: str, key: str | int) -> str:
    """Append a key (``.name``) or an index (``[3]``) to a dotted field path."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def split_validation_message(message: str) -> tuple[str | None, str]:
    """Split msgspec's ``"Expected `int`, got `str` - at `$.a.b[0]`"`` into ``("a.b[0]", problem)``.

    A missing or unknown field is reported at the field itself (``a.b[0].name``), not at its
    parent object. A message with no path that starts with a backticked name (raised by a
    ``__post_init__`` check) is reported at that name.
    """
    match = _AT_PATH.search(message)
    path = match.group(1).lstrip(".") if match else ""
    problem = message[: match.start()] if match else message
    if found := _UNKNOWN.match(problem):
        return join_path(path, found.group(1)), "unknown field"
    if found := _MISSING.match(problem):
        return join_path(path, found.group(1)), "required field is missing"
    if not path and (found := _LEADING_FIELD.match(problem)):
        return found.group(1), problem
    return path or None, problem
