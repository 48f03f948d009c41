"""Between cached JSON responses and SSE streams, both ways.

Entries are stored as the complete, non-streamed response, so one entry answers both kinds of
request: a streamed miss is assembled into that form as it passes (:class:`StreamAssembler`);
a streamed hit is replayed from it (:func:`replay`) as content chunks, a finish chunk, the usage
chunk when asked for, and ``[DONE]``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gateway.sse import SSEParser

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_PIECES = re.compile(r"\S+\s*|\s+")


class StreamAssembler:
    """Feeds on a chat or completions SSE stream; :meth:`result` is the equivalent JSON body,
    or None when the stream did not end with ``[DONE]`` (nothing to cache then)."""

    def __init__(self, endpoint: str) -> None:
        self.chat = endpoint == "chat/completions"
        self._parser = SSEParser()
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Any = None
        self._done = False
        self._broken = False

    @property
    def complete(self) -> bool:
        """Whether the stream ended with ``[DONE]`` (its answer is then :meth:`result`)."""
        return self._done and not self._broken

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        for event in self._parser.feed(chunk):
            if event.data == b"[DONE]":
                self._done = True
                continue
            try:
                data = _decode(event.data)
            except msgspec.DecodeError:
                self._broken = True
                return
            if not isinstance(data, dict) or "error" in data:
                self._broken = True
                return
            self._head = self._head or {k: data.get(k) for k in ("id", "created", "model")}
            if data.get("usage"):
                self._usage = data["usage"]
            for choice in data.get("choices") or []:
                self._add(choice)

    def _add(self, choice: dict[str, Any]) -> None:
        slot = self._choices.setdefault(
            choice.get("index", 0), {"text": [], "tool_calls": {}, "finish_reason": None}
        )
        if choice.get("finish_reason"):
            slot["finish_reason"] = choice["finish_reason"]
        if not self.chat:
            slot["text"].append(choice.get("text") or "")
            return
        delta = choice.get("delta") or {}
        if delta.get("content"):
            slot["text"].append(delta["content"])
        for call in delta.get("tool_calls") or []:
            entry = slot["tool_calls"].setdefault(
                call.get("index", 0),
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            if call.get("id"):
                entry["id"] = call["id"]
            function = call.get("function") or {}
            entry["function"]["name"] += function.get("name") or ""
            entry["function"]["arguments"] += function.get("arguments") or ""

    def result(self) -> bytes | None:
        if not self._done or self._broken or not self._choices:
            return None
        choices = []
        for index in sorted(self._choices):
            slot = self._choices[index]
            text = "".join(slot["text"])
            if self.chat:
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": text or None,
                    "refusal": None,
                }
                if slot["tool_calls"]:
                    message["tool_calls"] = [
                        slot["tool_calls"][i] for i in sorted(slot["tool_calls"])
                    ]
                choices.append(
                    {
                        "index": index,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": slot["finish_reason"] or "stop",
                    }
                )
            else:
                choices.append(
                    {
                        "index": index,
                        "text": text,
                        "logprobs": None,
                        "finish_reason": slot["finish_reason"] or "stop",
                    }
                )
        body = {
            **self._head,
            "object": "chat.completion" if self.chat else "text_completion",
            "choices": choices,
        }
        if self._usage:
            body["usage"] = self._usage
        return _encode(body)


def replay(body: bytes, endpoint: str, include_usage: bool) -> list[bytes]:
    """SSE events replaying a cached JSON response as a stream."""
    data = _decode(body)
    head = {k: data.get(k) for k in ("id", "created", "model")}
    chat = endpoint == "chat/completions"
    kind = "chat.completion.chunk" if chat else "text_completion"
    events = []

    def emit(choices: list[dict[str, Any]], **extra: Any) -> None:
        events.append(
            b"data: " + _encode({**head, "object": kind, "choices": choices, **extra}) + b"\n\n"
        )

    for choice in data.get("choices") or []:
        index = choice.get("index", 0)
        if chat:
            message = choice.get("message") or {}
            emit(
                [
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ]
            )
            for piece in _PIECES.findall(message.get("content") or ""):
                emit([{"index": index, "delta": {"content": piece}, "finish_reason": None}])
            for n, call in enumerate(message.get("tool_calls") or []):
                emit(
                    [
                        {
                            "index": index,
                            "finish_reason": None,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": n,
                                        "id": call.get("id"),
                                        "type": "function",
                                        "function": call.get("function"),
                                    }
                                ]
                            },
                        }
                    ]
                )
            emit([{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}])
        else:
            pieces = _PIECES.findall(choice.get("text") or "") or [""]
            for n, piece in enumerate(pieces):
                last = n == len(pieces) - 1
                emit(
                    [
                        {
                            "index": index,
                            "text": piece,
                            "logprobs": None,
                            "finish_reason": choice.get("finish_reason") if last else None,
                        }
                    ]
                )
    if include_usage and data.get("usage"):
        emit([], usage=data["usage"])
    events.append(b"data: [DONE]\n\n")
    return events


class ResponsesAssembler:
    """Feeds on a Responses API event stream; :meth:`result` is its final ``Response`` (from
    the closing ``response.completed`` / ``.incomplete`` / ``.failed`` event), or None."""

    FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._final: bytes | None = None

    @property
    def complete(self) -> bool:
        return self._final is not None

    def feed(self, chunk: bytes) -> None:
        if self._final is not None:
            return
        for event in self._parser.feed(chunk):
            if event.name is not None and event.name not in self.FINAL:
                continue
            if event.name is None and b'"type":"response.' not in event.data[:64].replace(
                b" ", b""
            ):
                continue
            try:
                data = _decode(event.data)
            except msgspec.DecodeError:
                continue
            if isinstance(data, dict) and data.get("type") in self.FINAL:
                response = data.get("response")
                if isinstance(response, dict):
                    self._final = _encode(response)
                    return

    def result(self) -> bytes | None:
        return self._final


Assembler = StreamAssembler | ResponsesAssembler


def assembler_for(endpoint: str) -> Assembler:
    """The assembler of a stream of ``endpoint``'s format (the client's)."""
    return ResponsesAssembler() if endpoint == "responses" else StreamAssembler(endpoint)


def replay_response(body: bytes) -> list[bytes]:
    """SSE events replaying a stored Responses API ``Response`` as a stream: created,
    in_progress, each output item added, its text or arguments in one delta, done, and the
    closing event for its status; numbered from 0."""
    response = _decode(body)
    events: list[bytes] = []

    def emit(kind: str, **data: Any) -> None:
        payload = {"type": kind, **data, "sequence_number": len(events)}
        events.append(b"event: " + kind.encode() + b"\ndata: " + _encode(payload) + b"\n\n")

    started = {**response, "status": "in_progress", "output": [], "completed_at": None}
    started.pop("usage", None)
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    for index, item in enumerate(response.get("output") or []):
        kind = item.get("type")
        if kind == "message":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            for part_index, part in enumerate(item.get("content") or []):
                where = {
                    "item_id": item.get("id"),
                    "output_index": index,
                    "content_index": part_index,
                }
                if part.get("type") == "output_text":
                    empty = {**part, "text": ""}
                    emit("response.content_part.added", **where, part=empty)
                    text = part.get("text") or ""
                    emit("response.output_text.delta", **where, delta=text, logprobs=[])
                    emit("response.output_text.done", **where, text=text, logprobs=[])
                elif part.get("type") == "refusal":
                    emit("response.content_part.added", **where, part={**part, "refusal": ""})
                    refusal = part.get("refusal") or ""
                    emit("response.refusal.delta", **where, delta=refusal)
                    emit("response.refusal.done", **where, refusal=refusal)
                else:
                    emit("response.content_part.added", **where, part=part)
                emit("response.content_part.done", **where, part=part)
        elif kind == "function_call":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            where = {"item_id": item.get("id"), "output_index": index}
            arguments = item.get("arguments") or ""
            emit("response.function_call_arguments.delta", **where, delta=arguments)
            emit(
                "response.function_call_arguments.done",
                **where,
                name=item.get("name"),
                arguments=arguments,
            )
        else:
            emit("response.output_item.added", output_index=index, item=item)
        emit("response.output_item.done", output_index=index, item=item)
    status = response.get("status")
    closing = {"incomplete": "response.incomplete", "failed": "response.failed"}
    emit(closing.get(status, "response.completed"), response=response)
    return events
