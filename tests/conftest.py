"""Shared fixtures: real simulator and gateway servers on loopback, official SDK clients."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.servers import Sim, group, running_gateway, running_sim


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sim() -> Iterator[Sim]:
    with running_sim() as s:
        yield s


@pytest.fixture
def gateway_url(sim: Sim) -> Iterator[str]:
    """A gateway serving model `chat` (alias `chat-alias`) on one simulator."""
    config = {"models": [group("chat", sim.url, aliases=["chat-alias"])]}
    with running_gateway(config) as gw:
        yield gw.url


@pytest.fixture
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0) as c:
        yield c
