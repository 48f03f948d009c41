"""The `anthropic` and `openai` providers (official SDKs) behind the gateway, against the
simulator's Anthropic Messages API and OpenAI API, with the official SDKs as clients."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai
import pytest
from anthropic.types import MessageParam, TextBlock
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)

from tests.support.servers import Sim, http_json, running_gateway
from tests.support.spec import validate

TOOLS: list[ChatCompletionFunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
QUESTION = "What is the weather in Paris?"
ASK: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": QUESTION},
]
# ASK without its system message, as the Anthropic SDK types a conversation's turns.
CLAUDE_ASK: list[MessageParam] = [{"role": "user", "content": QUESTION}]


def cloud_config(sim: Sim, provider: str, **options: object) -> dict[str, object]:
    backend = {
        "provider": provider,
        "url": sim.url,
        "model": "sim-model",
        "api_key": "sk-up",
        "options": options,
    }
    return {"models": [{"name": "cloud", "backends": [backend]}]}


@pytest.fixture(params=["aiohttp", "httpx"])
def claude_gateway(sim: Sim, request: pytest.FixtureRequest) -> Iterator[str]:
    with running_gateway(cloud_config(sim, "anthropic", transport=request.param)) as gw:
        yield gw.url


@pytest.fixture
def claude_client(claude_gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{claude_gateway}/v1", api_key="x", max_retries=0) as c:
        yield c


def test_chat_through_anthropic_provider(
    claude_client: openai.OpenAI, sim: Sim, claude_gateway: str
) -> None:
    reply = claude_client.chat.completions.create(model="cloud", messages=ASK, max_tokens=10)
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.completion_tokens == len(reply.choices[0].message.content.split())
    sent = sim.stats()["recent"][-1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["system"] == "Be brief."
    assert sent["body"]["max_tokens"] == 10
    # The SDK authenticates with x-api-key or, in newer versions, a bearer token.
    credential = sent["headers"].get("x-api-key") or sent["headers"]["authorization"]
    assert credential.removeprefix("Bearer ") == "sk-up"
    raw = http_json(
        "POST",
        f"{claude_gateway}/v1/chat/completions",
        {"model": "cloud", "messages": ASK, "max_tokens": 5},
    )[2]
    validate("CreateChatCompletionResponse", raw)


def test_default_max_tokens_is_sent(claude_client: openai.OpenAI, sim: Sim) -> None:
    claude_client.chat.completions.create(model="cloud", messages=ASK)
    assert sim.stats()["recent"][-1]["body"]["max_tokens"] == 4096


def test_stream_through_anthropic_provider(claude_client: openai.OpenAI) -> None:
    plain = claude_client.chat.completions.create(model="cloud", messages=ASK, max_tokens=15)
    chunks = list(
        claude_client.chat.completions.create(
            model="cloud",
            messages=ASK,
            max_tokens=15,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage is not None
    assert plain.usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_tool_calls_both_ways_through_anthropic_provider(claude_client: openai.OpenAI) -> None:
    first = claude_client.chat.completions.create(
        model="cloud", messages=ASK, tools=TOOLS, max_tokens=50
    )
    assert first.choices[0].finish_reason == "tool_calls"
    assert first.choices[0].message.tool_calls is not None
    call = first.choices[0].message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    streamed = list(
        claude_client.chat.completions.create(
            model="cloud", messages=ASK, tools=TOOLS, max_tokens=50, stream=True
        )
    )
    fragments = [
        c.choices[0].delta.tool_calls[0]
        for c in streamed
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert fragments[0].id == call.id
    assert all(f.index == 0 for f in fragments)
    arguments = ""
    for f in fragments:
        assert f.function is not None
        arguments += f.function.arguments or ""
    assert json.loads(arguments) == args
    finish = [
        c.choices[0].finish_reason for c in streamed if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["tool_calls"]
    answer = claude_client.chat.completions.create(
        model="cloud",
        max_tokens=10,
        tools=TOOLS,
        messages=[
            *ASK,
            # The SDK takes back its own reply model (it serialises pydantic models), but its
            # parameter types admit only the TypedDicts.
            first.choices[0].message,  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert answer.choices[0].message.content


@pytest.mark.parametrize(
    ("status", "error", "seen"),
    [
        (401, openai.AuthenticationError, 401),
        (404, openai.NotFoundError, 404),
        (429, openai.RateLimitError, 429),
        (529, openai.InternalServerError, 503),
        (400, openai.BadRequestError, 400),
    ],
)
def test_anthropic_errors_map_to_openai(
    claude_client: openai.OpenAI,
    sim: Sim,
    status: int,
    error: type[openai.APIStatusError],
    seen: int,
) -> None:
    sim.set_faults(error_rates={status: 1.0})
    with pytest.raises(error) as raised:
        claude_client.chat.completions.create(model="cloud", messages=ASK)
    assert raised.value.status_code == seen
    assert "Injected fault" in raised.value.message


def test_unsupported_parameters_get_400(claude_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        claude_client.chat.completions.create(model="cloud", messages=ASK, n=2)
    assert raised.value.param == "n"
    with pytest.raises(openai.BadRequestError) as embeddings:
        claude_client.embeddings.create(model="cloud", input="x")
    assert embeddings.value.code == "unsupported_endpoint"


def test_messages_endpoint_passes_through_to_anthropic(claude_gateway: str, sim: Sim) -> None:
    with anthropic.Anthropic(base_url=claude_gateway, api_key="x", max_retries=0) as client:
        message = client.messages.create(model="cloud", max_tokens=8, messages=CLAUDE_ASK)
        count = client.messages.count_tokens(model="cloud", messages=CLAUDE_ASK)
    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text
    assert sim.stats()["recent"][-1]["body"]["model"] == "sim-model"
    assert count.input_tokens == message.usage.input_tokens + (
        message.usage.cache_read_input_tokens or 0
    )


@pytest.fixture(params=["aiohttp", "httpx"])
def openai_gateway(sim: Sim, request: pytest.FixtureRequest) -> Iterator[str]:
    with running_gateway(cloud_config(sim, "openai", transport=request.param)) as gw:
        yield gw.url


def test_openai_provider_every_endpoint(openai_gateway: str, sim: Sim) -> None:
    with openai.OpenAI(base_url=f"{openai_gateway}/v1", api_key="x", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="cloud", messages=ASK, max_tokens=6, extra_body={"top_k": 4}
        )
        assert reply.choices[0].message.content
        sent = sim.stats()["recent"][-1]
        assert sent["body"]["top_k"] == 4
        assert sent["headers"]["authorization"] == "Bearer sk-up"
        chunks = list(
            client.chat.completions.create(model="cloud", messages=ASK, max_tokens=6, stream=True)
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            == reply.choices[0].message.content
        )
        assert client.completions.create(model="cloud", prompt="hi", max_tokens=3).choices
        vectors = client.embeddings.create(model="cloud", input=["a", "b"])
        assert len(vectors.data) == 2
        sim.set_faults(error_rates={429: 1.0})
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="cloud", messages=ASK)


def test_provider_options_are_validated(sim: Sim) -> None:
    from gateway.app import create_app
    from gateway.config_loader import ConfigError, settings_from_mapping

    for provider in ("openai", "anthropic"):
        config = cloud_config(sim, provider, colour="blue")
        with pytest.raises(ConfigError, match=r"models\[0\]\.backends\[0\]: unknown option"):
            create_app(settings_from_mapping(config, "test"))
        keyless = {"models": [{"name": "c", "backends": [{"provider": provider, "url": sim.url}]}]}
        with pytest.raises(ConfigError, match="api_key"):
            create_app(settings_from_mapping(keyless, "test"))
