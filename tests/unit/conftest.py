"""Fixtures for unit tests of background-using pieces."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.background import Background, Spawn


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Runs coroutines in a :class:`Background` that is stopped (its tasks cancelled) when the
    test ends, as the app's lifespan would."""
    async with Background() as background:
        yield background.spawn
