"""Tool calls out of model answers: whole messages, and streamed deltas reassembled.

Chat Completions streams a call as deltas: ``index`` on every one, ``id``, ``type`` and
``function.name`` on the first, ``function.arguments`` in fragments. Real backends bend this
(REFERENCES.md): vLLM may reuse ``index`` 0 for a second call, telling them apart only by a new
``id``, and may send no arguments at all. :class:`ToolCallAssembler` keys calls by index, starts
a new call when a new non-empty id arrives on an index already holding one, and turns missing
arguments into ``{}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.agents.base import ToolCall
from gateway.codec import encode


def _arguments(value: Any) -> str:
    """Arguments as JSON text (``{}`` when absent or blank)."""
    if isinstance(value, str):
        return value if value.strip() else "{}"
    if value is None:
        return "{}"
    return encode(value).decode()  # a backend that sent an object instead of text


def fallback_id(seed: str, index: int) -> str:
    """A stable id for a call that came without one."""
    return "call_" + hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:24]


def calls_in_message(message: Mapping[str, Any], seed: str = "") -> list[ToolCall]:
    """The tool calls of an assistant message (``tool_calls`` entries of type ``function``)."""
    found: list[ToolCall] = []
    entries = message.get("tool_calls")
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return found
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        function = entry.get("function")
        if not isinstance(function, Mapping) or not function.get("name"):
            continue
        call_id = entry.get("id")
        found.append(
            ToolCall(
                id=call_id if isinstance(call_id, str) and call_id else fallback_id(seed, i),
                name=str(function["name"]),
                arguments=_arguments(function.get("arguments")),
            )
        )
    return found


class _Partial:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self.name = ""
        self.arguments: list[str] = []


class ToolCallAssembler:
    """Feed the ``tool_calls`` of each streamed delta; read :meth:`calls` at the end.

    Args:
        seed: makes the ids of calls that arrive without one stable (the step's request id).
    """

    __slots__ = ("_by_index", "_order", "_seed")

    def __init__(self, seed: str = "") -> None:
        self._seed = seed
        self._by_index: dict[int, _Partial] = {}
        self._order: list[_Partial] = []

    def feed(self, deltas: Sequence[Mapping[str, Any]]) -> None:
        """Take the ``delta.tool_calls`` entries of one chunk."""
        for delta in deltas:
            raw_id = delta.get("id")
            call_id = raw_id if isinstance(raw_id, str) else ""
            index = delta.get("index")
            if not isinstance(index, int):
                # No index: only an id other than the latest call's starts a call (some
                # backends repeat the id on every fragment).
                latest = self._order[-1].id if self._order else ""
                new = call_id != "" and latest not in ("", call_id)
                index = len(self._order) if new else max(len(self._order) - 1, 0)
            partial = self._by_index.get(index)
            fresh_id = call_id != ""
            if partial is None or (fresh_id and partial.id and call_id != partial.id):
                partial = _Partial(call_id)
                self._by_index[index] = partial
                self._order.append(partial)
            elif fresh_id and not partial.id:
                partial.id = call_id
            function = delta.get("function")
            if isinstance(function, Mapping):
                name = function.get("name")
                if isinstance(name, str) and name:
                    partial.name = name if not partial.name else partial.name
                fragment = function.get("arguments")
                if isinstance(fragment, str) and fragment:
                    partial.arguments.append(fragment)
                elif isinstance(fragment, Mapping):  # a backend that sent an object, whole
                    partial.arguments.append(_arguments(fragment))

    @property
    def started(self) -> bool:
        """Whether any call has begun."""
        return bool(self._order)

    def calls(self) -> list[ToolCall]:
        """The calls seen so far, in order of appearance (nameless fragments dropped)."""
        return [
            ToolCall(
                id=p.id or fallback_id(self._seed, i),
                name=p.name,
                arguments=_arguments("".join(p.arguments)),
            )
            for i, p in enumerate(self._order)
            if p.name
        ]
