"""Stream translation between Anthropic Messages events and OpenAI chat completion chunks.

Each translator is fed parsed SSE events one at a time and returns the SSE bytes to send on, so a
chunk goes out as soon as its source event arrives.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import msgspec

from gateway.sse import Event, SSEFramer, encode_event, parse_event
from gateway.translate.messages import (
    CHAT_TO_STOP_REASON,
    STOP_REASON_TO_CHAT,
    messages_usage_to_chat,
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
DONE = b"data: [DONE]\n\n"


class MessagesStreamToChat:
    """Anthropic Messages stream events in, OpenAI ``chat.completion.chunk`` events out."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # Anthropic content-block index -> tool call index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return encode_event(_encode(chunk))

    def feed(self, event: Event) -> list[bytes]:
        """The chat events for one Anthropic event (an ``error`` event becomes OpenAI's)."""
        data = _decode(event.data) if event.data else {}
        kind = data.get("type") or event.name
        if kind == "message_start":
            message = data.get("message") or {}
            self.id, self.model = message.get("id", ""), message.get("model", "")
            self.usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") != "tool_use":
                return []
            index = self._tools[data.get("index", 0)] = len(self._tools)
            return [
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": block.get("id", ""),
                                "type": "function",
                                "function": {"name": block.get("name", ""), "arguments": ""},
                            }
                        ]
                    }
                )
            ]
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self._tools.get(data.get("index", 0), 0)
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "function": {"arguments": delta.get("partial_json", "")},
                                }
                            ]
                        }
                    )
                ]
            return []
        if kind == "message_delta":
            self.usage.update(data.get("usage") or {})
            reason = (data.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, STOP_REASON_TO_CHAT.get(reason or "end_turn", "stop"))]
        if kind == "message_stop":
            out = []
            if self.include_usage:
                chunk = {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": messages_usage_to_chat(self.usage),
                }
                out.append(encode_event(_encode(chunk)))
            return [*out, DONE]
        if kind == "error":
            error = data.get("error") or {}
            envelope = {
                "error": {
                    "message": error.get("message", "upstream stream error"),
                    "type": error.get("type", "api_error"),
                    "param": None,
                    "code": None,
                }
            }
            return [encode_event(_encode(envelope))]
        return []


class ChatStreamToMessages:
    """OpenAI ``chat.completion.chunk`` events in, Anthropic Messages stream events out."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.finished = False
        self.stop_reason = "end_turn"
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self._block: tuple[str, int] | None = None  # ("text" | "tool", tool index)
        self._blocks = 0

    @staticmethod
    def _event(name: str, data: dict[str, Any]) -> bytes:
        return encode_event(_encode({"type": name, **data}), name)

    def _start(self, chunk: dict[str, Any]) -> list[bytes]:
        self.started = True
        message: dict[str, Any] = {
            "id": f"msg_{chunk.get('id', '')}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": dict(self.usage),
        }
        return [self._event("message_start", {"message": message})]

    def _close_block(self) -> list[bytes]:
        if self._block is None:
            return []
        self._block = None
        self._blocks += 1
        return [self._event("content_block_stop", {"index": self._blocks - 1})]

    def _open(self, kind: tuple[str, int], block: dict[str, Any]) -> list[bytes]:
        out = self._close_block()
        self._block = kind
        return [
            *out,
            self._event("content_block_start", {"index": self._blocks, "content_block": block}),
        ]

    def feed(self, event: Event) -> list[bytes]:
        """The Anthropic events for one chat event (``[DONE]`` ends the message)."""
        if event.data == b"[DONE]":
            return self.finish()
        chunk = _decode(event.data)
        if "error" in chunk:
            error = chunk.get("error") or {}
            self.finished = True
            return [
                self._event(
                    "error", {"error": {"type": "api_error", "message": error.get("message", "")}}
                )
            ]
        out = [] if self.started else self._start(chunk)
        if chunk.get("usage"):
            usage = chunk["usage"]
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            self.usage = {
                "input_tokens": (usage.get("prompt_tokens") or 0) - cached,
                "output_tokens": usage.get("completion_tokens") or 0,
                "cache_read_input_tokens": cached,
            }
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self._block is None or self._block[0] != "text":
                    out += self._open(("text", -1), {"type": "text", "text": ""})
                out.append(
                    self._event(
                        "content_block_delta",
                        {
                            "index": self._blocks,
                            "delta": {"type": "text_delta", "text": delta["content"]},
                        },
                    )
                )
            for call in delta.get("tool_calls") or []:
                index = call.get("index", 0)
                function = call.get("function") or {}
                if self._block != ("tool", index):
                    out += self._open(
                        ("tool", index),
                        {
                            "type": "tool_use",
                            "id": call.get("id", ""),
                            "name": function.get("name", ""),
                            "input": {},
                        },
                    )
                if function.get("arguments"):
                    out.append(
                        self._event(
                            "content_block_delta",
                            {
                                "index": self._blocks,
                                "delta": {
                                    "type": "input_json_delta",
                                    "partial_json": function["arguments"],
                                },
                            },
                        )
                    )
            if choice.get("finish_reason"):
                self.stop_reason = CHAT_TO_STOP_REASON.get(choice["finish_reason"], "end_turn")
        return out

    def finish(self) -> list[bytes]:
        """Close the message (idempotent)."""
        if self.finished:
            return []
        self.finished = True
        out = [] if self.started else self._start({})
        out += self._close_block()
        out.append(
            self._event(
                "message_delta",
                {
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": self.usage,
                },
            )
        )
        out.append(self._event("message_stop", {}))
        return out


class EventTranslator(Protocol):
    """Turns one parsed SSE event into the SSE bytes to send on."""

    def feed(self, event: Event) -> list[bytes]: ...


class TranslatingStream:
    """Raw upstream bytes in, translated SSE bytes out (a :class:`StreamConverter`).

    Comment lines pass through unchanged, in order: they carry an agent's tool activity
    (``docs/agents.md``), which every SDK ignores, whatever the API.
    """

    def __init__(self, translator: EventTranslator) -> None:
        self._framer = SSEFramer()
        self._translator = translator

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for block in self._framer.feed(chunk):
            event = parse_event(block)
            if event is not None:
                out.extend(self._translator.feed(event))
            elif block.startswith(b":"):
                out.append(block)
        return b"".join(out)

    def finish(self) -> bytes:
        finish = getattr(self._translator, "finish", None)
        return b"".join(finish()) if finish else b""
