"""Streams: relayed as they come; a client that goes away cancels the upstream request.

The simulator's gate holds upstream streams after their first tokens, so a stream is known to be
still running when a test looks (instead of slowing the simulator down and hoping)."""

from __future__ import annotations

import openai
import pytest

from tests.support.servers import group, running_gateway, running_sim

pytestmark = pytest.mark.anyio


async def test_client_disconnect_cancels_upstream() -> None:
    with (
        running_sim() as sim,
        running_gateway({"models": [group("chat", sim.url)]}) as gw,
        sim.gate(after_tokens=5),
    ):
        async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as c:
            stream = await c.chat.completions.create(
                model="chat",
                messages=[{"role": "user", "content": "tell me a long story"}],
                max_tokens=60,
                stream=True,
            )
            received = 0
            async for _ in stream:
                received += 1
                if received == 3:
                    break
            await stream.close()
        stats = sim.wait_for(lambda s: s["cancelled"] == 1)
        assert stats["cancelled"] == 1
        assert stats["completed"] == 0
        assert stats["running"] == 0


async def test_chunks_arrive_before_the_stream_ends() -> None:
    with (
        running_sim() as sim,
        running_gateway({"models": [group("chat", sim.url)]}) as gw,
        sim.gate(after_tokens=5),
    ):
        async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as c:
            stream = await c.chat.completions.create(
                model="chat",
                messages=[{"role": "user", "content": "story"}],
                max_tokens=40,
                extra_body={"ignore_eos": True},
                stream=True,
            )
            early = ""
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    early += chunk.choices[0].delta.content
                    # The upstream is still generating: the gateway did not buffer the stream.
                    assert sim.stats()["running"] == 1
                    break
            # Text arrived before the end (a stream without content fails here).
            assert early.strip()
            sim.release_gate()
            rest = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert rest.strip()
        assert sim.stats()["completed"] == 1


async def test_upstream_dropping_mid_stream_surfaces_as_an_error() -> None:
    with running_sim(step_base_ms=5) as sim:
        sim.set_faults(drop_stream_after=4)
        with running_gateway({"models": [group("chat", sim.url)]}) as gw:
            async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as c:
                stream = await c.chat.completions.create(
                    model="chat",
                    messages=[{"role": "user", "content": "story"}],
                    max_tokens=60,
                    stream=True,
                )
                chunks: list[object] = []

                async def drain() -> None:
                    async for chunk in stream:
                        chunks.append(chunk)

                with pytest.raises(openai.APIError) as raised:
                    await drain()
                assert len(chunks) == 4
                assert "failed" in raised.value.message
