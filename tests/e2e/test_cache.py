"""The response cache end to end: memory and real Redis tiers, semantics, streams, failures."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import redis as redis_client
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from gateway.clock import ManualClock
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import (
    Sim,
    eventually,
    group,
    http_json,
    running_gateway,
    running_sim,
)
from tests.support.spec import validate

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "tell me about caches"}]


def cached_group(sim: Sim, **cache: Any) -> dict[str, Any]:
    return group("chat", sim.url, cache={"enabled": True, **cache})


def ask(
    url: str, headers: dict[str, str] | None = None, **body: Any
) -> tuple[int, dict[str, str], Any]:
    return http_json(
        "POST",
        f"{url}/v1/chat/completions",
        {"model": "chat", "messages": USER, "temperature": 0, **body},
        headers,
    )


@pytest.fixture
def clock() -> ManualClock:
    """The gateway's time: it moves only when a test advances it."""
    return ManualClock()


@pytest.fixture
def memory_gateway(sim: Sim, clock: ManualClock) -> Iterator[str]:
    with running_gateway({"models": [cached_group(sim)]}, clock=clock) as gw:
        yield gw.url


def redis_keys(redis: RedisServer) -> int:
    """How many entries the Redis tier holds."""
    with redis_client.Redis.from_url(redis.url) as conn:
        return int(conn.dbsize())


def test_hit_miss_and_bypass(memory_gateway: str, sim: Sim) -> None:
    status, first, body = ask(memory_gateway)
    assert (status, first["x-gateway-cache"]) == (200, "miss")
    _, second, again = ask(memory_gateway)
    assert second["x-gateway-cache"] == "hit"
    assert second["x-gateway-backend"] == "cache:memory"
    assert int(second["age"]) >= 0
    assert again == body
    assert sim.stats()["completed"] == 1
    assert ask(memory_gateway, temperature=0.7)[1]["x-gateway-cache"] == "bypass"
    assert ask(memory_gateway, {"cache-control": "no-store"})[1]["x-gateway-cache"] == "bypass"
    assert sim.stats()["completed"] == 3
    refreshed = ask(memory_gateway, {"cache-control": "no-cache"})
    assert refreshed[1]["x-gateway-cache"] == "miss"
    assert sim.stats()["completed"] == 4
    assert ask(memory_gateway, seed=7)[1]["x-gateway-cache"] == "miss"  # a seed: deterministic


def test_max_age_ttl_and_body_extension(sim: Sim, clock: ManualClock) -> None:
    with running_gateway({"models": [cached_group(sim, ttl_s=1.0)]}, clock=clock) as gw:
        ask(gw.url)
        clock.advance(1.2)  # past the TTL
        assert ask(gw.url)[1]["x-gateway-cache"] == "miss"
        assert ask(gw.url)[1]["x-gateway-cache"] == "hit"
        _, headers, _ = ask(gw.url, cache_control="no-store")
        assert headers["x-gateway-cache"] == "bypass"
        assert "cache_control" not in sim.stats()["recent"][-1]["body"]


def test_max_age_rejects_older_entries(memory_gateway: str, sim: Sim, clock: ManualClock) -> None:
    ask(memory_gateway)
    clock.advance(1.1)  # the entry is now at least a second old
    assert ask(memory_gateway, cache_control="max-age=0")[1]["x-gateway-cache"] == "miss"
    assert ask(memory_gateway, {"cache-control": "max-age=3600"})[1]["x-gateway-cache"] == "hit"
    assert sim.stats()["completed"] == 2


def test_tenants_never_share_entries(sim: Sim) -> None:
    config = {"models": [cached_group(sim)], "auth": {"api_keys": ["sk-a", "sk-b"]}}
    with running_gateway(config) as gw:
        a = {"authorization": "Bearer sk-a"}
        b = {"authorization": "Bearer sk-b"}
        assert ask(gw.url, a)[1]["x-gateway-cache"] == "miss"
        assert ask(gw.url, a)[1]["x-gateway-cache"] == "hit"
        assert ask(gw.url, b)[1]["x-gateway-cache"] == "miss"


def test_streams_are_stored_and_replayed_both_ways(memory_gateway: str) -> None:
    with openai.OpenAI(base_url=f"{memory_gateway}/v1", api_key="x", max_retries=0) as client:
        live = list(
            client.chat.completions.create(
                model="chat",
                messages=USER,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        live_text = "".join(c.choices[0].delta.content or "" for c in live if c.choices)
        plain = client.chat.completions.with_raw_response.create(
            model="chat", messages=USER, temperature=0
        )
        assert plain.headers["x-gateway-cache"] == "hit"
        assert plain.parse().choices[0].message.content == live_text
        plain_usage = plain.parse().usage
        assert plain_usage is not None
        assert live[-1].usage is not None
        assert plain_usage.completion_tokens == live[-1].usage.completion_tokens
        other: list[ChatCompletionMessageParam] = [
            {"role": "user", "content": "a different question"}
        ]
        client.chat.completions.create(model="chat", messages=other, temperature=0)
        replayed = client.chat.completions.with_raw_response.create(
            model="chat",
            messages=other,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert replayed.headers["x-gateway-cache"] == "hit"
        chunks = list(replayed.parse())
        original = client.chat.completions.create(model="chat", messages=other, temperature=0)
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            == original.choices[0].message.content
        )
        assert chunks[-1].usage is not None
        assert original.usage is not None
        assert chunks[-1].usage.completion_tokens == original.usage.completion_tokens
    req = urllib.request.Request(
        f"{memory_gateway}/v1/chat/completions",
        data=json.dumps(
            {"model": "chat", "messages": other, "temperature": 0, "stream": True}
        ).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req) as resp:
        events = [
            line[6:] for line in resp.read().decode().split("\n") if line.startswith("data: ")
        ]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        validate("CreateChatCompletionStreamResponse", json.loads(event))


def test_embeddings_are_cached(memory_gateway: str, sim: Sim) -> None:
    body = {"model": "chat", "input": ["a", "b"]}
    first = http_json("POST", f"{memory_gateway}/v1/embeddings", body)
    second = http_json("POST", f"{memory_gateway}/v1/embeddings", body)
    assert second[1]["x-gateway-cache"] == "hit"
    assert second[2] == first[2]
    assert sim.stats()["requests"]["embeddings"] == 1


def redis_config(sim: Sim, redis: RedisServer) -> dict[str, Any]:
    return {
        "models": [cached_group(sim)],
        "cache": {
            "tiers": [
                {"backend": "memory"},
                {"backend": "redis", "options": {"url": redis.url, "timeout_ms": 50}},
            ],
            "retry_after_s": 0.2,
        },
    }


def test_two_gateways_share_the_redis_tier(sim: Sim) -> None:
    with (
        running_redis() as redis,
        running_gateway(redis_config(sim, redis)) as one,
        running_gateway(redis_config(sim, redis)) as two,
    ):
        assert ask(one.url)[1]["x-gateway-cache"] == "miss"
        assert eventually(lambda: redis_keys(redis) == 1)  # stored after the answer was sent
        shared = ask(two.url, {"cache-control": "max-age=3600"})[1]
        assert shared["x-gateway-backend"] == "cache:redis"
        promoted = ask(two.url)[1]
        assert promoted["x-gateway-backend"] == "cache:memory"  # promoted on the Redis hit
        assert sim.stats()["completed"] == 1


def test_redis_killed_mid_run_fails_open_and_recovers(sim: Sim, clock: ManualClock) -> None:
    with running_redis() as redis, running_gateway(redis_config(sim, redis), clock=clock) as gw:
        for i in range(3):
            assert ask(gw.url, messages=[{"role": "user", "content": f"q{i}"}])[0] == 200
        redis.stop()
        statuses = [
            ask(gw.url, messages=[{"role": "user", "content": f"after {i}"}])[0] for i in range(10)
        ]
        assert statuses == [200] * 10
        with urllib.request.urlopen(f"{gw.url}/metrics") as resp:
            text = resp.read().decode()
        errors = sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "gateway_cache_errors_total"
        )
        assert errors >= 1
        redis.start()
        stored = redis_keys(redis)
        clock.advance(0.3)  # past retry_after_s: the tier is tried again
        ask(gw.url, messages=[{"role": "user", "content": "after restart"}])
        assert eventually(lambda: redis_keys(redis) == stored + 1)
        with running_gateway(redis_config(sim, redis), clock=clock) as fresh:
            _, headers, _ = ask(fresh.url, messages=[{"role": "user", "content": "after restart"}])
            assert headers["x-gateway-backend"] == "cache:redis"


def test_identical_concurrent_requests_make_one_upstream_call() -> None:
    import concurrent.futures

    with (
        running_sim() as slow_sim,
        running_gateway({"models": [cached_group(slow_sim)]}) as gw,
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client,
    ):

        def plain(_: int) -> tuple[str, str]:
            raw = client.chat.completions.with_raw_response.create(
                model="chat", messages=USER, temperature=0, max_tokens=20
            )
            return raw.headers["x-gateway-cache"], raw.parse().choices[0].message.content or ""

        def streamed(_: int) -> tuple[str, str]:
            raw = client.chat.completions.with_raw_response.create(
                model="chat", messages=USER, temperature=0, max_tokens=20, stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
            return raw.headers["x-gateway-cache"], text

        with concurrent.futures.ThreadPoolExecutor(10) as pool, slow_sim.gate():
            first = pool.submit(plain, 0)
            slow_sim.wait_held(1)  # the leader's call is upstream, held there
            others = [pool.submit(plain, i) for i in range(7)]
            others += [pool.submit(streamed, i) for i in range(2)]
            gw.wait_coalesced(9)  # every other request waits on the leader's call
            slow_sim.release_gate()
            results = [first.result(), *(f.result() for f in others)]
        assert slow_sim.stats()["requests"]["chat"] == 1  # one upstream call for all ten
        assert len({text for _, text in results}) == 1
        assert results[0][0] == "miss"
        assert {kind for kind, _ in results[1:]} <= {"coalesced", "hit"}


def test_a_refresh_during_a_leader_does_not_strand_its_followers() -> None:
    import concurrent.futures

    with (
        running_sim() as slow_sim,
        running_gateway({"models": [cached_group(slow_sim)]}) as gw,
        concurrent.futures.ThreadPoolExecutor(3) as pool,
        slow_sim.gate(),
    ):
        leader = pool.submit(ask, gw.url, None, max_tokens=20)
        slow_sim.wait_held(1)
        refresh = pool.submit(ask, gw.url, {"cache-control": "no-cache"}, max_tokens=20)
        slow_sim.wait_held(2)  # the refresh went upstream too
        follower = pool.submit(ask, gw.url, None, max_tokens=20)
        gw.wait_coalesced(1)  # the follower waits on the leader
        slow_sim.release_gate()
        results = [f.result(timeout=30) for f in (leader, refresh, follower)]
    assert [status for status, _, _ in results] == [200, 200, 200]
    assert results[1][1]["x-gateway-cache"] == "miss"
    assert results[2][1]["x-gateway-cache"] in ("coalesced", "hit")


def test_a_stream_options_that_is_not_an_object_is_no_500(memory_gateway: str) -> None:
    for options in ("x", [1]):
        body = {"model": "chat", "input": "hi", "stream_options": options}
        status, _, _ = http_json("POST", f"{memory_gateway}/v1/embeddings", body)
        assert status == 200  # embeddings do not model `stream_options`: it passes through
