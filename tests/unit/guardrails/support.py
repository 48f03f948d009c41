"""Builders shared by the guardrail tests: contexts, chat chunks, SSE streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from gateway.guardrails.base import GuardrailContext
from gateway.identity import Principal
from gateway.sse import SSEParser


def context(body: dict[str, Any] | None = None) -> GuardrailContext:
    """A fresh request context (its own ``state``)."""
    return GuardrailContext(
        principal=Principal(key_id="k"),
        model="m",
        endpoint="chat/completions",
        request_id="req-1",
        body=body if body is not None else {"model": "m", "messages": []},
    )


def chunk(content: str | None = None, finish: str | None = None, index: int = 0) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice."""
    delta: dict[str, Any] = {} if content is None else {"content": content}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def sse(events: Iterable[dict[str, Any] | bytes]) -> bytes:
    """A stream's bytes: dicts as ``data:`` events, bytes as they are."""
    out = b""
    for event in events:
        out += (
            event
            if isinstance(event, bytes)
            else b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
        )
    return out


async def pieces(
    data: bytes, cuts: Iterable[int], closed: list[bool] | None = None
) -> AsyncIterator[bytes]:
    """``data`` cut at ``cuts``; sets ``closed[0]`` when the generator is finalised."""
    start = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            if cut > start:
                yield data[start:cut]
                start = cut
    finally:
        if closed is not None:
            closed[0] = True


async def collect(stream: AsyncIterator[bytes], into: list[bytes] | None = None) -> bytes:
    """Everything ``stream`` yields, joined; each yield is also appended to ``into``."""
    out = b""
    async for data in stream:
        out += data
        if into is not None:
            into.append(data)
    return out


def contents(data: bytes) -> list[str | None]:
    """Each chunk event's first choice's ``delta.content`` (None for none, or no choice);
    ``[DONE]`` is left out."""
    out: list[str | None] = []
    for event in SSEParser().feed(data):
        if event.data != b"[DONE]":
            choices = json.loads(event.data)["choices"]
            out.append(choices[0]["delta"].get("content") if choices else None)
    return out
