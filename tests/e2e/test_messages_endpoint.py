"""The gateway's Anthropic-compatible /v1/messages, with the official anthropic SDK as client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import anthropic
import pytest
from anthropic.types import MessageParam, TextBlock, ToolParam, ToolUseBlockParam

from tests.support.servers import Sim, group, http_json, running_gateway

TOOLS: list[ToolParam] = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
ASK: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(params=["translated", "native"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(sim: Sim, mode: str) -> Iterator[anthropic.Anthropic]:
    options = {"messages": True} if mode == "native" else {}
    backends = [{"url": sim.url, "model": "sim-model", "options": options}]
    config = {
        "models": [{"name": "claude-local", "backends": backends}],
        "auth": {"api_keys": ["sk-gw"]},
    }
    with (
        running_gateway(config) as gw,
        anthropic.Anthropic(base_url=gw.url, api_key="sk-gw", max_retries=0) as c,
    ):
        yield c


def test_plain_message(client: anthropic.Anthropic, sim: Sim, mode: str) -> None:
    message = client.messages.create(
        model="claude-local", max_tokens=12, system="Be brief.", messages=ASK
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == ("claude-local" if mode == "translated" else "sim-model")
    assert message.content[0].type == "text"
    assert message.content[0].text
    assert message.usage.output_tokens == len(message.content[0].text.split())
    assert message.stop_reason in ("end_turn", "max_tokens")
    path = sim.stats()["recent"][-1]["path"]
    assert path == ("/v1/messages" if mode == "native" else "/v1/chat/completions")


def test_streamed_text_matches_plain(client: anthropic.Anthropic) -> None:
    plain = client.messages.create(model="claude-local", max_tokens=20, messages=ASK)
    with client.messages.stream(model="claude-local", max_tokens=20, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert isinstance(plain.content[0], TextBlock)
    assert text == plain.content[0].text
    assert final.stop_reason == plain.stop_reason
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    first = client.messages.create(model="claude-local", max_tokens=60, messages=ASK, tools=TOOLS)
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather"
    assert isinstance(call.input["city"], str)
    with client.messages.stream(
        model="claude-local", max_tokens=60, messages=ASK, tools=TOOLS
    ) as stream:
        streamed = stream.get_final_message()
    streamed_call = next(b for b in streamed.content if b.type == "tool_use")
    assert streamed_call.input == call.input
    assert streamed.stop_reason == "tool_use"
    answer = client.messages.create(
        model="claude-local",
        max_tokens=20,
        tools=TOOLS,
        messages=[
            *ASK,
            # The block as the reply had it, every field included; `model_dump` is untyped.
            {"role": "assistant", "content": [cast(ToolUseBlockParam, call.model_dump())]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ],
    )
    assert answer.content[0].type == "text"


def test_count_tokens(client: anthropic.Anthropic) -> None:
    count = client.messages.count_tokens(model="claude-local", messages=ASK)
    assert count.input_tokens > 0


def test_errors_use_anthropic_shape(client: anthropic.Anthropic, sim: Sim) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=5, messages=ASK)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="claude-local", max_tokens=0, messages=ASK)
    assert "max_tokens" in bad.value.message
    # 529 first: after a 429 the gateway itself benches the backend for its Retry-After.
    for status, error in ((529, anthropic.OverloadedError), (429, anthropic.RateLimitError)):
        sim.set_faults(error_rates={status: 1.0})
        with pytest.raises(error):
            client.messages.create(model="claude-local", max_tokens=5, messages=ASK)
    sim.set_faults(error_rates={})


def test_x_api_key_and_bad_key(sim: Sim) -> None:
    config = {"models": [group("claude-local", sim.url)], "auth": {"api_keys": ["sk-gw"]}}
    with running_gateway(config) as gw:
        body = {"model": "claude-local", "max_tokens": 5, "messages": ASK}
        assert (
            http_json(
                "POST",
                f"{gw.url}/v1/messages",
                body,
                {"x-api-key": "sk-gw", "anthropic-version": "2023-06-01"},
            )[0]
            == 200
        )
        status, _, error = http_json("POST", f"{gw.url}/v1/messages", body, {"x-api-key": "no"})
        assert status == 401
        assert error == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "Incorrect API key provided."},
        }
