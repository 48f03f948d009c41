"""Coalesced streams: late joiners follow the leader's stream live, and leaving cancels nothing
for the others (one upstream call, counted at the simulator).

The simulator's gate holds the one upstream stream after its first tokens, so "still running"
is a fact the tests set up rather than a race they hope to win."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support.servers import (
    GatewayServer,
    Sim,
    group,
    http_json,
    running_gateway,
    running_sim,
)

pytestmark = pytest.mark.anyio

USER: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "a long story about coalescing, please"}
]
REQUEST: dict[str, Any] = {"model": "chat", "messages": USER, "temperature": 0, "max_tokens": 40}
HELD_AFTER = 10  # tokens the upstream stream sends before the gate holds it


@pytest.fixture
def slow() -> Iterator[tuple[Sim, str]]:
    """A simulator whose streams pause after ``HELD_AFTER`` tokens until released, behind a
    caching gateway."""
    with (
        running_sim() as sim,
        running_gateway({"models": [group("chat", sim.url, cache={"enabled": True})]}) as gw,
        sim.gate(after_tokens=HELD_AFTER),
    ):
        yield sim, gw.url


async def content_chunks(stream: AsyncIterator[Any], count: int) -> list[Any]:
    """The next ``count`` chunks that carry content."""
    got: list[Any] = []
    async for chunk in stream:
        got.append(chunk)
        if sum(1 for c in got if c.choices and c.choices[0].delta.content) == count:
            break
    return got


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_a_late_joiner_gets_what_was_sent_then_the_rest_live(
    slow: tuple[Sim, str],
) -> None:
    sim, url = slow
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        leader_raw = await client.chat.completions.with_raw_response.create(**REQUEST, stream=True)
        assert leader_raw.headers["x-gateway-cache"] == "miss"
        leader = leader_raw.parse()
        leader_chunks = await content_chunks(leader, 5)
        follower_raw = await client.chat.completions.with_raw_response.create(
            **REQUEST, stream=True, stream_options={"include_usage": True}
        )
        assert follower_raw.headers["x-gateway-cache"] == "coalesced"
        follower = follower_raw.parse()
        follower_chunks = await content_chunks(follower, 5)
        # Live: the one upstream generation is still running while the joiner reads.
        assert sim.stats()["running"] == 1
        sim.release_gate()
        follower_chunks += [c async for c in follower]
        leader_chunks += [c async for c in leader]
    assert text_of(follower_chunks) == text_of(leader_chunks)
    assert len(text_of(leader_chunks)) > 0
    stats = sim.stats()
    assert stats["requests"]["chat"] == 1
    assert stats["completed"] == 1
    # Each client gets the usage chunk only if it asked for it.
    assert follower_chunks[-1].usage is not None
    assert follower_chunks[-1].usage.completion_tokens == 40
    assert all(c.choices for c in leader_chunks)


async def test_the_leader_leaving_does_not_cut_the_followers(slow: tuple[Sim, str]) -> None:
    sim, url = slow
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        leader = await client.chat.completions.create(**REQUEST, stream=True)
        await content_chunks(leader, 3)
        follower = await client.chat.completions.create(**REQUEST, stream=True)
        follower_chunks = await content_chunks(follower, 3)
        await leader.close()
        sim.release_gate()
        follower_chunks += [c async for c in follower]
        stats = sim.stats()
        assert (stats["completed"], stats["cancelled"]) == (1, 0)
        # The whole answer reached the follower and was stored, usage included.
        stored = await client.chat.completions.with_raw_response.create(**REQUEST)
        assert stored.headers["x-gateway-cache"] == "hit"
        answer = stored.parse()
        assert answer.choices[0].message.content == text_of(follower_chunks)
        assert answer.usage is not None
        assert answer.usage.completion_tokens == 40
    assert sim.stats()["requests"]["chat"] == 1


async def test_the_upstream_is_cancelled_when_everyone_left(slow: tuple[Sim, str]) -> None:
    sim, url = slow
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        leader = await client.chat.completions.create(**REQUEST, stream=True)
        await content_chunks(leader, 2)
        follower = await client.chat.completions.create(**REQUEST, stream=True)
        await content_chunks(follower, 2)
        await follower.close()
        await leader.close()
    stats = sim.wait_for(lambda s: s["cancelled"] == 1)
    assert (stats["cancelled"], stats["completed"], stats["running"]) == (1, 0, 0)


def test_waiters_share_the_leaders_error_instead_of_piling_on() -> None:
    import concurrent.futures

    with running_sim() as sim:
        sim.set_faults(error_rates={"400": 1.0})
        config = {"models": [group("chat", sim.url, cache={"enabled": True})]}
        gw: GatewayServer
        with (
            running_gateway(config) as gw,
            concurrent.futures.ThreadPoolExecutor(6) as pool,
            sim.gate(),
        ):
            leader = pool.submit(http_json, "POST", f"{gw.url}/v1/chat/completions", REQUEST)
            sim.wait_held(1)  # the leader is upstream; its error comes once released
            followers = [
                pool.submit(http_json, "POST", f"{gw.url}/v1/chat/completions", REQUEST)
                for _ in range(5)
            ]
            gw.wait_coalesced(5)
            sim.release_gate()
            results = [f.result(timeout=30) for f in (leader, *followers)]
        assert [status for status, _, _ in results] == [400] * 6
        assert {r[1]["x-gateway-cache"] for r in results[1:]} == {"coalesced"}
        assert all(r[2] == results[0][2] for r in results)
        assert sim.stats()["requests"]["chat"] == 1
