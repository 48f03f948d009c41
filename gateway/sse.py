"""Incremental Server-Sent Events parsing and encoding (the subset LLM APIs use)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event: its ``event:`` name (None when absent) and its ``data:`` payload."""

    name: str | None
    data: bytes


class SSEParser:
    """Feed bytes as they arrive; get back the events completed so far."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        """Events completed by ``chunk`` (a trailing partial event waits for more bytes)."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events: list[Event] = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return events
            block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            name = None
            data: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].removeprefix(b" "))
                elif line.startswith(b"event:"):
                    name = line[6:].strip().decode()
            if data or name:
                events.append(Event(name, b"\n".join(data)))


def encode_event(data: bytes, name: str | None = None) -> bytes:
    """One event as SSE bytes."""
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + data + b"\n\n"


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
