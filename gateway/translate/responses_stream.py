"""Stream translation: OpenAI ``chat.completion.chunk`` events in, Responses API events out.

:class:`ChatStreamToResponses` is fed the parsed SSE events of a chat stream one at a time (like
:class:`gateway.translate.streams.ChatStreamToMessages`, so it fits
:class:`gateway.translate.streams.TranslatingStream`) and returns the events to send, each an
``event: <type>`` line and its JSON with an increasing ``sequence_number``:

``response.created``, ``response.in_progress``; per output item ``response.output_item.added``,
then for a message ``response.content_part.added``, ``response.output_text.delta``... (or
``response.refusal.delta``...), ``response.output_text.done``, ``response.content_part.done``;
for vLLM's reasoning the same with ``response.reasoning_text.*``; for a tool call
``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``; then
``response.output_item.done``; last ``response.completed`` (``response.incomplete`` when the
chat stream stopped for ``length`` or ``content_filter``, ``response.failed`` on an upstream
error event), carrying the whole ``Response``. Responses streams end there, with no ``[DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from gateway.sse import Event, encode_event
from gateway.translate.responses import (
    chat_usage_to_responses,
    function_call_item,
    item_id,
    message_item,
    output_text_part,
    reasoning_item,
    reasoning_of,
    response_error,
    response_object,
    status_of,
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# A content part's kind -> (the part's text field, the event family of its deltas)
_PARTS = {
    "output_text": ("text", "response.output_text"),
    "refusal": ("refusal", "response.refusal"),
    "reasoning_text": ("text", "response.reasoning_text"),
}


class _Item:
    """An output item being streamed: its dict (as ``output`` holds it) and its open part."""

    __slots__ = ("data", "delta_head", "index", "part", "pieces", "tool")

    def __init__(self, data: dict[str, Any], index: int, tool: int | None = None) -> None:
        self.data = data
        self.index = index
        self.tool = tool  # the chat tool call index, for function calls
        self.part: str | None = None  # the kind of the open content part
        # The open part's text so far, joined when the part closes (appending to one string
        # per delta would copy the whole text each time), and the bytes every delta event of
        # that part starts with.
        self.pieces: list[str] = []
        self.delta_head = b""

    def settle(self) -> None:
        """Write the open part's text so far into its dict (for a snapshot or its close)."""
        if self.part is not None:
            field = _PARTS[self.part][0]
            self.data["content"][-1][field] = "".join(self.pieces)


class ChatStreamToResponses:
    """OpenAI ``chat.completion.chunk`` events in, Responses API stream events out.

    ``request``: the client's Responses request (for the echo in each ``Response``);
    ``clock``: what ``completed_at`` is read from.
    """

    def __init__(
        self,
        request: dict[str, Any],
        *,
        response_id: str,
        created_at: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.request = request
        self.response_id = response_id
        self.created_at = created_at
        self.clock = clock
        self.started = False
        self.finished = False
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self._final: dict[str, Any] | None = None
        self._open: list[_Item] = []  # open items, in output order
        self._tools: dict[int, _Item] = {}  # chat tool call index -> its item

    # ------------------------------------------------------------------------------ events

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        payload = {"type": kind, **data, "sequence_number": self.sequence}
        self.sequence += 1
        return encode_event(_encode(payload), kind)

    def _snapshot(
        self, status: str, *, reason: str | None = None, error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        completed = int(self.clock()) if status == "completed" else None
        for item in self._open:
            item.settle()
        return response_object(
            self.request,
            response_id=self.response_id,
            created_at=self.created_at,
            status=status,
            output=[dict(item) for item in self.output],
            usage=self.usage if status != "in_progress" else None,
            completed_at=completed,
            incomplete_reason=reason,
            error=error,
        )

    def _start(self) -> list[bytes]:
        self.started = True
        snapshot = self._snapshot("in_progress")
        return [
            self._event("response.created", {"response": snapshot}),
            self._event("response.in_progress", {"response": snapshot}),
        ]

    # ------------------------------------------------------------------------------- items

    def _add_item(self, data: dict[str, Any], tool: int | None = None) -> tuple[_Item, bytes]:
        item = _Item(data, len(self.output), tool)
        self.output.append(data)
        self._open.append(item)
        added = self._event(
            "response.output_item.added", {"output_index": item.index, "item": dict(data)}
        )
        return item, added

    def _part_event(self, item: _Item, suffix: str, part: dict[str, Any]) -> bytes:
        return self._event(
            f"response.content_part.{suffix}",
            {
                "item_id": item.data["id"],
                "output_index": item.index,
                "content_index": len(item.data["content"]) - 1,
                "part": dict(part),
            },
        )

    def _open_part(self, item: _Item, kind: str) -> list[bytes]:
        out = self._close_part(item)
        field = _PARTS[kind][0]
        part: dict[str, Any] = (
            output_text_part("") if kind == "output_text" else {"type": kind, field: ""}
        )
        item.data["content"].append(part)
        item.part = kind
        item.pieces = []
        family = _PARTS[kind][1]
        head = {
            "type": f"{family}.delta",
            "item_id": item.data["id"],
            "output_index": item.index,
            "content_index": len(item.data["content"]) - 1,
        }
        event_line = b"event: " + f"{family}.delta".encode() + b"\ndata: "
        item.delta_head = event_line + _encode(head)[:-1] + b',"delta":'
        return [*out, self._part_event(item, "added", part)]

    def _close_part(self, item: _Item) -> list[bytes]:
        if item.part is None:
            return []
        item.settle()
        kind, item.part = item.part, None
        field, family = _PARTS[kind]
        part = item.data["content"][-1]
        done: dict[str, Any] = {
            "item_id": item.data["id"],
            "output_index": item.index,
            "content_index": len(item.data["content"]) - 1,
            field: part[field],
        }
        if kind == "output_text":
            done["logprobs"] = []
        return [
            self._event(f"{family}.done", done),
            self._part_event(item, "done", part),
        ]

    def _close_item(self, item: _Item, status: str) -> list[bytes]:
        self._open.remove(item)
        out: list[bytes] = []
        if item.data["type"] == "function_call":
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    {
                        "item_id": item.data["id"],
                        "output_index": item.index,
                        "name": item.data["name"],
                        "arguments": item.data["arguments"],
                    },
                )
            )
        else:
            out += self._close_part(item)
        item.data["status"] = status
        out.append(
            self._event(
                "response.output_item.done", {"output_index": item.index, "item": dict(item.data)}
            )
        )
        return out

    def _close_all(self, status: str = "completed") -> list[bytes]:
        out: list[bytes] = []
        last = self._open[-1] if self._open else None
        for item in list(self._open):
            out += self._close_item(item, status if item is last else "completed")
        return out

    def _close_except(self, keep: str) -> list[bytes]:
        """Close the open items of other types than ``keep`` (a new kind of output begins)."""
        out: list[bytes] = []
        for item in list(self._open):
            if item.data["type"] != keep:
                out += self._close_item(item, "completed")
        return out

    def _text(self, item_type: str, kind: str, delta: str) -> list[bytes]:
        """Append ``delta`` to the open ``item_type`` item's ``kind`` part (opening either)."""
        out = self._close_except(item_type)
        item = next((i for i in self._open if i.data["type"] == item_type), None)
        if item is None:
            index = len(self.output)
            data = (
                reasoning_item(item_id("rs", self.response_id, index), None, "in_progress")
                if item_type == "reasoning"
                else message_item(item_id("msg", self.response_id, index), [], "in_progress")
            )
            item, added = self._add_item(data)
            out.append(added)
        if item.part != kind:
            out += self._open_part(item, kind)
        item.pieces.append(delta)
        # The hottest event of a stream, built from the part's fixed head: the same bytes as
        # _event would encode (keys in the same order), without a dict per delta.
        tail = b',"logprobs":[]' if kind == "output_text" else b""
        number = str(self.sequence).encode()
        self.sequence += 1
        out.append(
            item.delta_head + _encode(delta) + tail + b',"sequence_number":' + number + b"}\n\n"
        )
        return out

    def _tool_delta(self, call: dict[str, Any]) -> list[bytes]:
        index = call.get("index", 0)
        function = call.get("function") or {}
        out: list[bytes] = []
        item = self._tools.get(index)
        if item is None:
            out += self._close_except("function_call")
            position = len(self.output)
            data = function_call_item(
                item_id("fc", self.response_id, position),
                call.get("id") or item_id("call", self.response_id, position),
                function.get("name") or "",
                "",
                "in_progress",
            )
            item, added = self._add_item(data, index)
            self._tools[index] = item
            out.append(added)
        elif function.get("name") and not item.data["name"]:
            item.data["name"] = function["name"]
        arguments = function.get("arguments")
        if arguments and item in self._open:
            item.data["arguments"] += arguments
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": item.data["id"], "output_index": item.index, "delta": arguments},
                )
            )
        return out

    # -------------------------------------------------------------------------------- feed

    def feed(self, event: Event) -> list[bytes]:
        """The Responses events for one chat event (``[DONE]`` ends the response)."""
        if self.finished:
            return []
        if event.data == b"[DONE]":
            return self.finish()
        if not event.data:
            return []
        chunk = _decode(event.data)
        out = [] if self.started else self._start()
        if not isinstance(chunk, dict):
            return out
        if "error" in chunk:
            return [*out, *self._fail(chunk.get("error"))]
        if chunk.get("usage"):
            self.usage = chat_usage_to_responses(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = reasoning_of(delta)
            if reasoning:
                out += self._text("reasoning", "reasoning_text", reasoning)
            if delta.get("content"):
                out += self._text("message", "output_text", delta["content"])
            if delta.get("refusal"):
                out += self._text("message", "refusal", delta["refusal"])
            for call in delta.get("tool_calls") or []:
                out += self._tool_delta(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                out += self._close_output()
        return out

    def _close_output(self) -> list[bytes]:
        """Close every item; a response with none gets an empty message, as OpenAI's do."""
        status, _ = status_of(self.finish_reason)
        out: list[bytes] = []
        if not self.output:
            item, added = self._add_item(
                message_item(item_id("msg", self.response_id, 0), [], "in_progress")
            )
            out += [added, *self._open_part(item, "output_text")]
        return [*out, *self._close_all(status)]

    def _fail(self, error: Any) -> list[bytes]:
        self.finished = True
        for item in self._open:
            item.data["status"] = "incomplete"
        self._open.clear()
        failed = self._snapshot(
            "failed", error=response_error(error if isinstance(error, dict) else None)
        )
        self._final = failed
        return [self._event("response.failed", {"response": failed})]

    def finish(self) -> list[bytes]:
        """End the response (idempotent): close what is open, then ``response.completed`` (or
        ``response.incomplete``)."""
        if self.finished:
            return []
        self.finished = True
        out = [] if self.started else self._start()
        out += self._close_output()
        status, reason = status_of(self.finish_reason)
        final = self._snapshot(status, reason=reason)
        self._final = final
        out.append(self._event(f"response.{status}", {"response": final}))
        return out

    def response(self) -> dict[str, Any]:
        """The final ``Response`` (what ``response.completed``, ``.incomplete`` or ``.failed``
        carried); while the stream runs, a snapshot ``in_progress``."""
        return self._final if self._final is not None else self._snapshot("in_progress")
