"""Send one OpenAI request and time it: a timestamp for every streamed event.

TTFT is the time to the first event carrying output (content or tool-call arguments); ITL is every
gap between consecutive output events; end-to-end latency runs to the end of the response.
Streams ask for ``include_usage`` so token counts are the server's own; without a usage chunk the
output events are counted instead. Events are decoded with msgspec into tiny Structs, which keeps
the client light enough to time over a thousand concurrent streams from one core.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[Any] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None
    error: Any = None


class _Body(msgspec.Struct):
    usage: _Usage | None = None
    choices: list[Any] = msgspec.field(default_factory=list)
    data: list[Any] = msgspec.field(default_factory=list)


_chunk = msgspec.json.Decoder(_Chunk)
_body = msgspec.json.Decoder(_Body)


@dataclass
class RequestRecord:
    """The outcome and timing of one request (times in seconds, relative to the run's start).

    Attributes:
        error: None on success, else a kind: ``http_<status>``, ``connect``, ``timeout``,
            ``stream_error``, ``incomplete`` (a stream that ended without ``[DONE]``).
        reply: the generated text (conversations feed it into the next turn).
        backend: the ``x-gateway-backend`` response header, when a gateway set one.
    """

    session: int
    turn: int
    start: float
    ttft: float | None = None
    latency: float | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    itls: list[float] = field(default_factory=list)
    error: str | None = None
    reply: str = ""
    backend: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tpot(self) -> float | None:
        """(latency - TTFT) / (output tokens - 1), vLLM's time per output token."""
        if self.ttft is None or self.latency is None or self.output_tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)


def _consume_events(
    buffer: bytearray,
    record: RequestRecord,
    now: float,
    t0: float,
    state: dict[str, Any],
    parts: list[str],
) -> bool:
    """Parse complete SSE events in ``buffer``; returns True once ``[DONE]`` was seen."""
    while True:
        end = buffer.find(b"\n\n")
        if end < 0:
            return False
        event = bytes(buffer[:end])
        del buffer[: end + 2]
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return True
            try:
                chunk = _chunk.decode(data)
            except msgspec.MsgspecError:
                continue
            if chunk.error is not None:
                record.error = "stream_error"
                return True
            if chunk.usage is not None:
                record.prompt_tokens = chunk.usage.prompt_tokens
                state["usage_tokens"] = chunk.usage.completion_tokens
            for choice in chunk.choices:
                text = choice.text if choice.delta is None else choice.delta.content
                has_output = bool(text) or bool(choice.delta and choice.delta.tool_calls)
                if not has_output:
                    continue
                if text:
                    parts.append(text)
                state["events"] += 1
                last = state["last"]
                if last is None:
                    record.ttft = now - t0
                else:
                    record.itls.append(now - last)
                state["last"] = now


async def send_request(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    *,
    stream: bool,
    session: int,
    turn: int,
    run_start: float,
    headers: dict[str, str],
    timeout_s: float,
) -> RequestRecord:
    """POST ``body`` to ``url`` and return its :class:`RequestRecord` (never raises for HTTP or
    network failures: they are recorded as the record's ``error``)."""
    t0 = time.perf_counter()
    record = RequestRecord(session, turn, t0 - run_start)
    try:
        async with asyncio.timeout(timeout_s):
            async with http.post(url, json=body, headers=headers) as resp:
                record.backend = resp.headers.get("x-gateway-backend")
                if resp.status >= 400:
                    await resp.read()
                    record.error = f"http_{resp.status}"
                elif stream:
                    await _read_stream(resp, record, t0)
                else:
                    raw = await resp.read()
                    now = time.perf_counter()
                    record.ttft = now - t0
                    try:
                        parsed = _body.decode(raw)
                    except msgspec.MsgspecError:
                        parsed = _Body()
                    if parsed.usage is not None:
                        record.prompt_tokens = parsed.usage.prompt_tokens
                        record.output_tokens = parsed.usage.completion_tokens
                    record.reply = _reply_text(parsed.choices)
    except TimeoutError:
        record.error = "timeout"
    except aiohttp.ClientConnectorError:
        record.error = "connect"
    except (aiohttp.ClientError, OSError):
        record.error = "connection"
    record.latency = time.perf_counter() - t0
    return record


def _reply_text(choices: list[Any]) -> str:
    if not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message") or {}
    return str(message.get("content") or choices[0].get("text") or "")


async def _read_stream(resp: aiohttp.ClientResponse, record: RequestRecord, t0: float) -> None:
    buffer = bytearray()
    state: dict[str, Any] = {"last": None, "events": 0, "usage_tokens": None}
    parts: list[str] = []
    done = False
    async for data in resp.content.iter_any():
        now = time.perf_counter()
        buffer += data
        if _consume_events(buffer, record, now, t0, state, parts):
            done = True
            break
    record.output_tokens = (
        state["usage_tokens"] if state["usage_tokens"] is not None else state["events"]
    )
    record.reply = "".join(parts)
    if not done and record.error is None:
        record.error = "incomplete"
