"""The official openai SDK against the gateway in front of the simulator, for every endpoint.

Raw bodies and stream chunks are also validated against OpenAI's published spec.
"""

from __future__ import annotations

import base64
import json
import struct
import urllib.request
from typing import cast

import openai
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)

from tests.support.servers import Sim, http_json
from tests.support.spec import validate, validate_completion_chunk

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
]


def sse_events(url: str, body: dict[str, object]) -> list[str]:
    """POST ``body`` and return the data payloads of the SSE stream, in order."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        text = resp.read().decode()
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def test_chat_completion(client: openai.OpenAI, sim: Sim) -> None:
    result = client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=6)
    assert result.object == "chat.completion"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content
    assert result.usage is not None
    assert result.usage.completion_tokens == len(result.choices[0].message.content.split())
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert sim.stats()["requests"]["chat"] == 1


def test_same_request_same_answer(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="chat", messages=MESSAGES)
    second = client.chat.completions.create(model="chat-alias", messages=MESSAGES)
    assert first.choices[0].message.content == second.choices[0].message.content


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=10)
    chunks = list(
        client.chat.completions.create(
            model="chat",
            messages=MESSAGES,
            max_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert plain.usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [plain.choices[0].finish_reason]


def test_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="chat", messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    plain = client.completions.create(model="chat", prompt="once upon a time", max_tokens=7)
    assert plain.object == "text_completion"
    assert plain.usage is not None
    assert plain.usage.completion_tokens == 7
    streamed = list(
        client.completions.create(
            model="chat", prompt="once upon a time", max_tokens=7, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == plain.choices[0].text


def test_embeddings_every_input_form(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model="chat", input="hello")
    assert len(one.data) == 1
    vector = one.data[0].embedding
    assert abs(sum(v * v for v in vector) - 1.0) < 1e-6
    many = client.embeddings.create(model="chat", input=["hello", "world"])
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding == vector  # deterministic
    tokens = client.embeddings.create(model="chat", input=[1, 2, 3])
    assert tokens.usage.prompt_tokens == 3
    token_lists = client.embeddings.create(model="chat", input=[[1, 2], [3, 4, 5]])
    assert token_lists.usage.prompt_tokens == 5
    floats = client.embeddings.create(
        model="chat", input="hello", encoding_format="float", dimensions=8
    )
    assert len(floats.data[0].embedding) == 8


def test_embeddings_base64_is_float32(gateway_url: str) -> None:
    status, _, body = http_json(
        "POST",
        f"{gateway_url}/v1/embeddings",
        {"model": "chat", "input": "hi", "encoding_format": "base64", "dimensions": 4},
    )
    assert status == 200
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert len(struct.unpack("<4f", raw)) == 4


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["chat", "chat-alias"]
    assert client.models.retrieve("chat-alias").id == "chat-alias"


def test_responses_validate_against_openai_spec(gateway_url: str) -> None:
    v1 = f"{gateway_url}/v1"
    chat = {"model": "chat", "messages": MESSAGES, "max_tokens": 5}
    validate("CreateChatCompletionResponse", http_json("POST", f"{v1}/chat/completions", chat)[2])
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    with_tools = {**chat, "tools": tools, "tool_choice": "required"}
    validate(
        "CreateChatCompletionResponse", http_json("POST", f"{v1}/chat/completions", with_tools)[2]
    )
    for stream_body in (
        {**chat, "stream": True, "stream_options": {"include_usage": True}},
        {**with_tools, "stream": True},
    ):
        events = sse_events(f"{v1}/chat/completions", stream_body)
        assert events[-1] == "[DONE]"
        for event in events[:-1]:
            validate("CreateChatCompletionStreamResponse", json.loads(event))
    completion = {"model": "chat", "prompt": "hi", "max_tokens": 3}
    validate("CreateCompletionResponse", http_json("POST", f"{v1}/completions", completion)[2])
    for event in sse_events(f"{v1}/completions", {**completion, "stream": True})[:-1]:
        validate_completion_chunk(json.loads(event))
    validate(
        "CreateEmbeddingResponse",
        http_json("POST", f"{v1}/embeddings", {"model": "chat", "input": ["a", "b"]})[2],
    )
    validate("ListModelsResponse", http_json("GET", f"{v1}/models")[2])
    validate("Model", http_json("GET", f"{v1}/models/chat")[2])
    validate("ErrorResponse", http_json("GET", f"{v1}/models/unknown")[2])


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    tools: list[ChatCompletionFunctionToolParam] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    first = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools
    )
    assert first.choices[0].message.tool_calls is not None
    call = first.choices[0].message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    second = client.chat.completions.create(
        model="chat",
        tools=tools,
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            # The call as the reply had it, every field included; `model_dump` is untyped.
            {
                "role": "assistant",
                "tool_calls": [cast(ChatCompletionMessageFunctionToolCallParam, call.model_dump())],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.content
    streamed = list(
        client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=tools,
            stream=True,
        )
    )
    arguments = ""
    for c in streamed:
        if c.choices and c.choices[0].delta.tool_calls:
            fragment = c.choices[0].delta.tool_calls[0].function
            assert fragment is not None
            arguments += fragment.arguments or ""
    assert json.loads(arguments) == json.loads(call.function.arguments)
