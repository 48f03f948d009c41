"""Closing async iterators that hold something: the one place that knows how.

A relayed stream, a flight's subscription or an agent's run holds an upstream connection (or a
share of one) until it is closed; a reader that stops early must close it, whatever kind of
iterator it got.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Closeable(Protocol):
    """An iterator that must be closed when its reader stops early: closing releases what it
    holds (an upstream, a subscription, a run)."""

    async def aclose(self) -> None: ...


async def close_chunks(chunks: AsyncIterator[Any]) -> None:
    """Close ``chunks`` (any async iterator) if it holds anything to release."""
    if isinstance(chunks, Closeable):
        await chunks.aclose()
