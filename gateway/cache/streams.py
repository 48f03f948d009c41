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
