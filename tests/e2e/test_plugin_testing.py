"""What a plugin author's own test looks like with ``gateway.testing`` (docs/plugins.md)."""

from __future__ import annotations

from collections.abc import Sequence

import openai
import pytest

from gateway import BackendView, RouteRequest, hookimpl
from gateway.hookspecs import RegisterRoutingStrategy
from gateway.testing import serve_gateway


class LastBackend:
    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> int:
        return len(backends) - 1


class MyPlugin:
    @hookimpl
    def register_routing_strategies(self, register: RegisterRoutingStrategy) -> None:
        register("last", LastBackend)


def test_my_strategy_picks_the_last_backend() -> None:
    fake = [{"provider": "fake", "name": "a"}, {"provider": "fake", "name": "b"}]
    config = {"models": [{"name": "chat", "routing": {"strategy": "last"}, "backends": fake}]}
    with serve_gateway(config, plugins=[MyPlugin()]) as gw:
        gw.fake("b").queue_replies("from b")
        with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client:
            reply = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
        assert reply.choices[0].message.content == "from b"
        assert gw.fake("b").bodies[0]["messages"][0]["content"] == "hi"
        assert gw.fake("a").requests == []


def test_fakes_stream_and_fail_on_demand() -> None:
    config = {"models": [{"name": "chat", "backends": [{"provider": "fake", "name": "a"}]}]}
    with (
        serve_gateway(config) as gw,
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client,
    ):
        gw.fake("a").queue_replies("one two three")
        stream = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "one two three"
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 3
        gw.fake("a").fail_next(times=5)
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}]
            )
        assert failed.value.status_code == 502
