"""The official anthropic SDK against the simulator's Messages API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import anthropic
import pytest
from anthropic.types import MessageParam, TextBlock, ToolParam, ToolUseBlock, ToolUseBlockParam

from tests.support.servers import Sim, running_sim

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


@pytest.fixture
def sim() -> Iterator[Sim]:
    with running_sim() as s:
        yield s


@pytest.fixture
def client(sim: Sim) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0) as c:
        yield c


def test_plain_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="sim-model", max_tokens=12, system="Be brief.", messages=ASK
    )
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.output_tokens == len(message.content[0].text.split())
    count = client.messages.count_tokens(model="sim-model", system="Be brief.", messages=ASK)
    assert count.input_tokens == message.usage.input_tokens


def test_streamed_text_matches_plain(client: anthropic.Anthropic) -> None:
    plain = client.messages.create(model="sim-model", max_tokens=20, messages=ASK)
    with client.messages.stream(model="sim-model", max_tokens=20, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert isinstance(plain.content[0], TextBlock)
    assert text == plain.content[0].text
    assert final.stop_reason == plain.stop_reason
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_tool_use_round_trip_plain_and_streamed(client: anthropic.Anthropic) -> None:
    first = client.messages.create(model="sim-model", max_tokens=50, messages=ASK, tools=TOOLS)
    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use"
    assert call.name == "get_weather"
    assert isinstance(call.input["city"], str)
    with client.messages.stream(
        model="sim-model", max_tokens=50, messages=ASK, tools=TOOLS
    ) as stream:
        streamed = stream.get_final_message()
    assert isinstance(streamed.content[0], ToolUseBlock)
    assert streamed.content[0].input == call.input
    follow_up = client.messages.create(
        model="sim-model",
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
    assert follow_up.content[0].type == "text"


def test_forced_tool_choice(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="sim-model",
        max_tokens=50,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "hello"}],
    )
    assert message.content[0].type == "tool_use"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, anthropic.RateLimitError),
        (529, anthropic.OverloadedError),
        (500, anthropic.InternalServerError),
        (401, anthropic.AuthenticationError),
    ],
)
def test_errors_in_anthropic_shape(
    client: anthropic.Anthropic, sim: Sim, status: int, error: type[anthropic.APIStatusError]
) -> None:
    sim.set_faults(error_rates={status: 1.0})
    with pytest.raises(error) as raised:
        client.messages.create(model="sim-model", max_tokens=5, messages=ASK)
    assert raised.value.status_code == status
    assert raised.value.body["type"] == "error"  # type: ignore[index]


def test_unknown_model_and_bad_request(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=5, messages=ASK)
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model="sim-model", max_tokens=0, messages=ASK)
    assert "max_tokens" in raised.value.message
