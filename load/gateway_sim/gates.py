"""Gates: named points where simulated requests wait until a test releases them.

A closed gate holds the requests subject to it: those sent with the header ``x-sim-gate: <name>``
and, when it was closed with ``all``, every inference request. With ``after_tokens`` 0 a request
waits before it is handled (it is already counted in the stats, faults are rolled after the
gate); with ``after_tokens`` N it is handled, gets its first N tokens (a stream sends them) and
then the engine generates nothing more for it until the gate opens (it stays ``running``).
Releasing opens the gate: every held request goes on, and later ones pass until it is closed
again. ``held`` counts the requests waiting at the gate, so that a test can wait until N are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec


class GateSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /sim/gates/{name}`` (all optional)."""

    all: bool = False
    after_tokens: int = 0


class Gate:
    """One named gate (see the module docstring)."""

    def __init__(self, name: str, on_release: Callable[[], None]) -> None:
        self.name = name
        self.closed = False
        self.all = False
        self.after_tokens = 0
        self.waiting = 0  # held before being handled
        self._open = asyncio.Event()
        self._open.set()
        self._on_release = on_release

    def close(self, spec: GateSpec) -> None:
        """Hold the requests subject to the gate from now on."""
        if spec.after_tokens < 0:
            raise ValueError("`after_tokens` must not be negative")
        self.all, self.after_tokens = spec.all, spec.after_tokens
        if not self.closed:
            self.closed = True
            self._open = asyncio.Event()

    def release(self) -> None:
        """Open the gate: held requests go on, later ones pass."""
        self.closed = False
        self._open.set()
        self._on_release()

    async def wait_before(self) -> None:
        """Wait here while the gate holds requests before they are handled."""
        if not self.closed or self.after_tokens:
            return
        self.waiting += 1
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1

    def holds_at(self, generated: int) -> bool:
        """Whether a sequence that has ``generated`` tokens must wait for more."""
        return self.closed and self.after_tokens > 0 and generated >= self.after_tokens
