"""/metrics exposes requests, latencies, overhead, TTFT, in-flight and tokens."""

from __future__ import annotations

import contextlib
import urllib.request

import openai
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_metrics_count_requests_tokens_and_latency(client: openai.OpenAI, gateway_url: str) -> None:
    plain = client.chat.completions.create(model="chat", messages=USER, max_tokens=5)
    list(
        client.chat.completions.create(
            model="chat",
            messages=USER,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with contextlib.suppress(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=USER)
    got = samples(gateway_url)
    ok = frozenset(
        {
            ("model", "chat"),
            ("backend", "chat-0"),
            ("endpoint", "chat/completions"),
            ("status", "200"),
        }
    )
    assert got[("gateway_requests_total", ok)] == 2
    usage = plain.usage
    assert usage is not None
    tokens = frozenset({("model", "chat"), ("backend", "chat-0")})
    assert got[("gateway_prompt_tokens_total", tokens)] == 2 * usage.prompt_tokens
    assert got[("gateway_completion_tokens_total", tokens)] == 2 * usage.completion_tokens
    assert got[("gateway_time_to_first_token_seconds_count", tokens)] == 1
    assert got[("gateway_upstream_duration_seconds_count", tokens)] == 2
    assert (
        got[
            (
                "gateway_overhead_duration_seconds_count",
                frozenset({("endpoint", "chat/completions")}),
            )
        ]
        == 2
    )
    assert got[("gateway_requests_in_flight", frozenset({("model", "chat")}))] == 0
    rejected = frozenset(
        {("model", "-"), ("backend", "none"), ("endpoint", "chat/completions"), ("status", "404")}
    )
    assert got[("gateway_requests_total", rejected)] == 1
