"""Server-Sent Events, the subset LLM APIs use: the gateway's one parser, framer and encoder.

- :class:`SSEParser` turns bytes as they arrive into :class:`Event` objects (translation);
- :class:`SSEFramer` cuts bytes into whole events, bytes unchanged (relaying and fan-out);
- :func:`parse_event` reads one framed event, for code that holds framed bytes already.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event: its ``event:`` name (None when absent) and its ``data:`` payload."""

    name: str | None
    data: bytes


def parse_event(block: bytes) -> Event | None:
    """One event from its lines (no trailing blank line needed); None for a comment or
    keep-alive block with neither ``event:`` nor ``data:``."""
    name = None
    data: list[bytes] = []
    for line in block.replace(b"\r\n", b"\n").split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode(errors="replace")
    if not data and name is None:
        return None
    return Event(name, b"\n".join(data))


def split_events(data: bytes) -> list[bytes]:
    """The event blocks in ``data`` (a complete stream or its tail), line ends normalised; a
    trailing partial event is included as it is."""
    return [e for e in data.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]


def encode_event(data: bytes, name: str | None = None) -> bytes:
    """One event as SSE bytes."""
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + data + b"\n\n"


class SSEParser:
    """Feed bytes as they arrive; get back the events completed so far."""

    __slots__ = ("_framer",)

    def __init__(self) -> None:
        self._framer = SSEFramer()

    def feed(self, chunk: bytes) -> list[Event]:
        """Events completed by ``chunk`` (a trailing partial event waits for more bytes)."""
        return [e for block in self._framer.feed(chunk) if (e := parse_event(block)) is not None]


class SSEFramer:
    """Cuts a byte stream into whole SSE events (each ending in a blank line), bytes unchanged
    but for ``\\r\\n`` line ends, which become ``\\n``."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events completed by ``chunk``."""
        buffer = self._buffer + chunk.replace(b"\r\n", b"\n")
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._buffer = buffer
            return []
        self._buffer = buffer[end + 2 :]
        return [event + b"\n\n" for event in buffer[:end].split(b"\n\n") if event.strip()]

    def flush(self) -> bytes:
        """Whatever trailed the last complete event (normally nothing)."""
        rest, self._buffer = self._buffer, b""
        return rest
