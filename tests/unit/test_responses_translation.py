"""Responses API <-> Chat Completions translation: requests, responses and streams, every answer
validated against OpenAI's published schemas (``Response``, ``ResponseStreamEvent``)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codec import decode_request
from gateway.errors import InvalidRequestError
from gateway.schemas.responses import ResponsesRequest
from gateway.sse import Event, SSEParser
from gateway.translate.responses import (
    chat_response_to_response,
    input_items,
    new_response_id,
    responses_request_to_chat,
)
from gateway.translate.responses_stream import ChatStreamToResponses
from gateway.translate.streams import TranslatingStream
from tests.support.spec import validate

RID = "resp_abc123"
FUNCTION_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def chat(req: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return responses_request_to_chat({"model": "m", **req}, history=history)


def refused(req: dict[str, Any], history: list[dict[str, Any]] | None = None) -> str | None:
    with pytest.raises(InvalidRequestError) as info:
        chat(req, history)
    assert info.value.status == 400
    return info.value.param


# ---------------------------------------------------------------------------------- the schema

decoder = msgspec.json.Decoder(ResponsesRequest)


def test_schema_accepts_a_full_request() -> None:
    body = {
        "model": "m",
        "input": [{"role": "user", "content": "hi"}],
        "instructions": "be brief",
        "tools": [FUNCTION_TOOL, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {}, "strict": True}},
        "reasoning": {"effort": "low"},
        "max_output_tokens": 100,
        "metadata": {"k": "v"},
        "top_k": 5,
    }
    req = decode_request(json.dumps(body).encode(), decoder)
    assert req.tools is not None
    assert req.tools[1].type == "web_search"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "input"),
        ({"model": "m", "input": "x", "temperature": 3}, "temperature"),
        ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "input": [{"content": "x"}]}, "input[0]"),
        ({"model": "m", "input": "x", "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format.name",
        ),
        ({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ],
)
def test_schema_rejects_with_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_request(json.dumps(body).encode(), decoder)
    assert info.value.param == param


def test_schema_allows_previous_response_id_without_input() -> None:
    req = decode_request(b'{"model": "m", "previous_response_id": "resp_1"}', decoder)
    assert req.input is None


# ------------------------------------------------------------------------ requests: input items


def test_string_input_and_instructions() -> None:
    out = chat({"input": "Hello", "instructions": "Be brief."})
    assert out["model"] == "m"
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    assert "stream" not in out


def test_message_items_of_each_role() -> None:
    out = chat(
        {
            "instructions": "I1",
            "input": [
                {"type": "message", "role": "developer", "content": "D1"},
                {"role": "system", "content": [{"type": "input_text", "text": "S1"}]},
                {"role": "user", "content": [{"type": "input_text", "text": "U1"}]},
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": "A1", "annotations": []},
                        {"type": "output_text", "text": "A2", "annotations": []},
                    ],
                },
                {"role": "assistant", "content": "A3"},
                {"role": "developer", "content": "D2"},
            ],
        }
    )
    assert out["messages"] == [
        {"role": "system", "content": "I1\n\nD1\n\nS1"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1A2"},
        {"role": "assistant", "content": "A3"},
        {"role": "system", "content": "D2"},
    ]


def test_user_parts_and_images() -> None:
    out = chat(
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {
                            "type": "input_image",
                            "image_url": "https://x.test/a.png",
                            "detail": "high",
                        },
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    ],
                }
            ]
        }
    )
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]


def test_function_calls_and_outputs() -> None:
    out = chat(
        {
            "input": [
                {"role": "user", "content": "weather in Paris and Rome?"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "content": ""},
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city": "Paris"}',
                },
                {
                    "type": "function_call",
                    "call_id": "call_2",
                    "name": "get_weather",
                    "arguments": '{"city": "Rome"}',
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                {
                    "type": "function_call_output",
                    "call_id": "call_2",
                    "output": [{"type": "input_text", "text": "rain"}],
                },
                {"type": "function_call", "call_id": "call_3", "name": "f", "arguments": "{}"},
            ]
        }
    )
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        },
    ]
    assert out["messages"] == [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_3", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
    ]


def test_history_comes_between_instructions_and_input() -> None:
    history: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": "first"},
        {
            "type": "message",
            "id": "msg_x",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "answer", "annotations": []}],
        },
    ]
    out = chat({"instructions": "sys", "input": "second"}, history)
    assert out["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "second"},
    ]
    assert refused({"input": "x"}, [{"type": "web_search_call", "id": "ws"}]) == (
        "previous_response_id"
    )


def test_input_items_normalises_a_string() -> None:
    assert input_items({"input": "hi"}) == [{"type": "message", "role": "user", "content": "hi"}]
    assert input_items({}) == []
    items = [{"role": "user", "content": "x"}]
    assert input_items({"input": items}) == items


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "item_reference", "id": "msg_1"}, "input[1].type"),
        ({"type": "web_search_call", "id": "ws_1", "status": "completed"}, "input[1].type"),
        ({"type": "computer_call_output", "call_id": "c", "output": {}}, "input[1].type"),
        (
            {"role": "user", "content": [{"type": "input_file", "file_id": "f"}]},
            "input[1].content[0].type",
        ),
        (
            {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]},
            "input[1].content[0].file_id",
        ),
        ({"role": "user", "content": [{"type": "input_image"}]}, "input[1].content[0].image_url"),
        (
            {"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]},
            "input[1].content[0].type",
        ),
        ({"role": "tool", "content": "x"}, "input[1].role"),
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "input[1].call_id"),
        ({"type": "function_call_output", "output": "x"}, "input[1].call_id"),
    ],
)
def test_items_without_chat_equivalent_are_refused(item: dict[str, Any], param: str) -> None:
    assert refused({"input": [{"role": "user", "content": "hi"}, item]}) == param


# ------------------------------------------------------------------ requests: tools and options


def test_function_tools_become_nested() -> None:
    plain = {"type": "function", "name": "f", "parameters": None, "strict": None}
    out = chat({"input": "x", "tools": [FUNCTION_TOOL, plain], "parallel_tool_calls": False})
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": FUNCTION_TOOL["parameters"],
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    assert out["parallel_tool_calls"] is False
    assert "tool_choice" not in out


@pytest.mark.parametrize(
    "kind",
    [
        "web_search",
        "web_search_preview",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "image_generation",
        "mcp",
        "custom",
        "local_shell",
    ],
)
def test_built_in_tools_are_refused(kind: str) -> None:
    assert refused({"input": "x", "tools": [FUNCTION_TOOL, {"type": kind}]}) == "tools[1].type"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    assert chat({"input": "x", "tools": [FUNCTION_TOOL], "tool_choice": choice})["tool_choice"] == (
        expected
    )


def test_allowed_tools_narrow_the_tools() -> None:
    other = {**FUNCTION_TOOL, "name": "other"}
    out = chat(
        {
            "input": "x",
            "tools": [FUNCTION_TOOL, other],
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "other"}],
            },
        }
    )
    assert [t["function"]["name"] for t in out["tools"]] == ["other"]
    assert out["tool_choice"] == "required"


@pytest.mark.parametrize(
    ("req", "param"),
    [
        (
            {"tools": [FUNCTION_TOOL], "tool_choice": {"type": "web_search_preview"}},
            "tool_choice.type",
        ),
        (
            {"tools": [FUNCTION_TOOL], "tool_choice": {"type": "mcp", "server_label": "s"}},
            "tool_choice.type",
        ),
        (
            {
                "tools": [FUNCTION_TOOL],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "file_search"}],
                },
            },
            "tool_choice.tools[0].type",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "name": "f"}}, "tool_choice.name"),
    ],
)
def test_tool_choices_without_chat_equivalent_are_refused(req: dict[str, Any], param: str) -> None:
    assert refused({"input": "x", **req}) == param


def test_tool_options_without_tools_are_dropped() -> None:
    out = chat({"input": "x", "tool_choice": "auto", "parallel_tool_calls": True})
    assert "tool_choice" not in out
    assert "parallel_tool_calls" not in out
    assert "tools" not in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            {
                "format": {
                    "type": "json_schema",
                    "name": "pt",
                    "schema": {"type": "object"},
                    "strict": True,
                }
            },
            {
                "type": "json_schema",
                "json_schema": {"name": "pt", "schema": {"type": "object"}, "strict": True},
            },
        ),
        (
            {"format": {"type": "json_schema", "name": "pt", "schema": {}, "description": "d"}},
            {
                "type": "json_schema",
                "json_schema": {"name": "pt", "schema": {}, "description": "d"},
            },
        ),
        ({"format": {"type": "json_object"}}, {"type": "json_object"}),
        ({"format": {"type": "text"}, "verbosity": "low"}, None),
        ({"verbosity": "high"}, None),
    ],
)
def test_text_format(text: dict[str, Any], expected: Any) -> None:
    assert chat({"input": "x", "text": text}).get("response_format") == expected


def test_sampling_limits_and_passthrough() -> None:
    out = chat(
        {
            "input": "x",
            "max_output_tokens": 64,
            "temperature": 0.2,
            "top_p": 0.9,
            "user": "u-1",
            "seed": 7,
            "stop": ["\n"],
            "top_k": 20,
            "reasoning": {"effort": "low", "summary": "auto"},
            "store": False,
            "metadata": {"a": "b"},
            "previous_response_id": "resp_0",
            "service_tier": "auto",
            "truncation": "disabled",
            "include": ["reasoning.encrypted_content"],
            "max_tool_calls": 3,
            "safety_identifier": "s",
            "prompt_cache_key": "k",
            "top_logprobs": 0,
            "stream_options": {"include_obfuscation": False},
        }
    )
    assert {k: v for k, v in out.items() if k != "messages"} == {
        "model": "m",
        "max_completion_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
        "seed": 7,
        "stop": ["\n"],
        "top_k": 20,
        "reasoning_effort": "low",
    }


def test_stream_always_asks_for_usage() -> None:
    out = chat({"input": "x", "stream": True})
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert "stream" not in chat({"input": "x", "stream": False})


@pytest.mark.parametrize(
    ("req", "param"),
    [
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"conversation": {"id": "conv_1"}}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"context_management": [{"type": "compaction"}]}, "context_management"),
        ({"truncation": "auto"}, "truncation"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"include": ["reasoning.encrypted_content", "file_search_call.results"]}, "include[1]"),
        ({"include": ["message.output_text.logprobs"]}, "include[0]"),
        ({"include": ["code_interpreter_call.outputs"]}, "include[0]"),
    ],
)
def test_fields_without_chat_equivalent_are_refused(req: dict[str, Any], param: str) -> None:
    assert refused({"input": "x", **req}) == param


def test_background_false_is_fine() -> None:
    assert chat({"input": "x", "background": False, "conversation": None})["messages"]


# ------------------------------------------------------------------------------------ responses


def completion(
    message: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "backend-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 2},
}
REQUEST = {"model": "m", "input": "hi"}


def respond(
    chat_body: dict[str, Any], request: dict[str, Any] = REQUEST, **kw: Any
) -> dict[str, Any]:
    out = chat_response_to_response(chat_body, request, response_id=RID, created_at=100, **kw)
    validate("Response", out)
    return out


def test_text_response() -> None:
    out = respond(completion({"content": "Hello!"}, usage=USAGE))
    assert out["id"] == RID
    assert out["object"] == "response"
    assert out["status"] == "completed"
    assert out["completed_at"] == 100
    assert out["model"] == "m"
    assert out["error"] is None
    assert out["incomplete_details"] is None
    assert out["output"] == [
        {
            "type": "message",
            "id": "msg_abc123_0",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}
            ],
        }
    ]
    assert out["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 17,
    }
    assert "output_text" not in out


def test_echo_of_the_request() -> None:
    request = {
        "model": "m",
        "input": "hi",
        "instructions": "sys",
        "max_output_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.8,
        "tools": [FUNCTION_TOOL, {"type": "function", "name": "f"}],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_object"}},
        "previous_response_id": "resp_0",
        "store": False,
        "metadata": {"k": "v"},
        "reasoning": {"effort": "high"},
        "user": "u",
    }
    out = respond(completion({"content": "{}"}), request, completed_at=105)
    assert out["completed_at"] == 105
    for key in ("instructions", "max_output_tokens", "temperature", "top_p", "tool_choice"):
        assert out[key] == request[key]
    assert out["tools"] == [
        FUNCTION_TOOL,
        {"type": "function", "name": "f", "description": None, "parameters": None, "strict": None},
    ]
    assert out["parallel_tool_calls"] is False
    assert out["text"] == request["text"]
    assert out["previous_response_id"] == "resp_0"
    assert out["store"] is False
    assert out["metadata"] == {"k": "v"}
    assert out["reasoning"] == {"effort": "high", "summary": None}
    assert out["user"] == "u"
    defaults = respond(completion({"content": "x"}))
    assert defaults["tool_choice"] == "auto"
    assert defaults["tools"] == []
    assert defaults["text"] == {"format": {"type": "text"}}
    assert defaults["parallel_tool_calls"] is True
    assert defaults["store"] is True
    assert defaults["metadata"] == {}
    assert defaults["truncation"] == "disabled"
    assert "usage" not in defaults


def test_tool_call_response() -> None:
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
    ]
    out = respond(completion({"content": None, "tool_calls": calls}, "tool_calls", USAGE))
    assert out["status"] == "completed"
    assert out["output"] == [
        {
            "type": "function_call",
            "id": "fc_abc123_0",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": "fc_abc123_1",
            "call_id": "call_b",
            "name": "get_weather",
            "arguments": '{"city":"Rome"}',
            "status": "completed",
        },
    ]
    with_text = respond(
        completion({"content": "Let me check.", "tool_calls": calls[:1]}, "tool_calls")
    )
    assert [i["type"] for i in with_text["output"]] == ["message", "function_call"]


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_cut_off_response_is_incomplete(finish: str, reason: str) -> None:
    out = respond(completion({"content": "Once upon a"}, finish, USAGE))
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": reason}
    assert out["completed_at"] is None
    assert out["output"][-1]["status"] == "incomplete"


def test_reasoning_refusal_and_empty_responses() -> None:
    out = respond(completion({"content": "42", "reasoning_content": "6 times 7"}))
    assert out["output"][0] == {
        "type": "reasoning",
        "id": "rs_abc123_0",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "6 times 7"}],
        "status": "completed",
    }
    assert out["output"][1]["id"] == "msg_abc123_1"
    newer = respond(completion({"content": "42", "reasoning": "6 times 7"}))
    assert newer["output"][0]["type"] == "reasoning"
    refusal = respond(completion({"content": None, "refusal": "I can't help with that."}))
    assert refusal["output"][0]["content"] == [
        {"type": "refusal", "refusal": "I can't help with that."}
    ]
    empty = respond(completion({"content": None}))
    assert empty["output"][0]["content"][0]["text"] == ""


def test_new_response_id() -> None:
    a, b = new_response_id(), new_response_id()
    assert a.startswith("resp_")
    assert a != b


# -------------------------------------------------------------------------------------- streams


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "backend",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }


def usage_chunk(usage: dict[str, Any] = USAGE) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def stream(
    chunks: list[dict[str, Any]], request: dict[str, Any] = REQUEST, done: bool = True
) -> tuple[list[dict[str, Any]], ChatStreamToResponses]:
    """Run ``chunks`` through a translator; every event is checked against the spec, its
    ``event:`` name against its ``type``, and sequence numbers count up from 0."""
    translator = ChatStreamToResponses(
        {**request, "stream": True}, response_id=RID, created_at=100, clock=lambda: 101.5
    )
    raw = b""
    for c in chunks:
        raw += b"".join(translator.feed(Event(None, json.dumps(c).encode())))
    raw += b"".join(translator.feed(Event(None, b"[DONE]")) if done else translator.finish())
    assert b"[DONE]" not in raw
    events = []
    for event in SSEParser().feed(raw):
        data = json.loads(event.data)
        assert event.name == data["type"]
        validate("ResponseStreamEvent", data)
        events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events, translator


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_text_stream() -> None:
    events, translator = stream(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo!"}),
            chunk({}, "stop"),
            usage_chunk(),
        ]
    )
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    assert events[2]["item"]["status"] == "in_progress"
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == ["Hel", "lo!"]
    assert all(
        (d["item_id"], d["output_index"], d["content_index"], d["logprobs"])
        == ("msg_abc123_0", 0, 0, [])
        for d in deltas
    )
    assert events[6]["text"] == "Hello!"
    assert events[7]["part"]["text"] == "Hello!"
    assert events[8]["item"]["status"] == "completed"
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["completed_at"] == 101
    assert final["usage"]["input_tokens"] == 12
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 2}
    assert final["output"][0]["content"][0]["text"] == "Hello!"
    assert translator.response() == final
    validate("Response", translator.response())


def test_tool_call_stream() -> None:
    def call(index: int, args: str, first: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"index": index, "function": {"arguments": args}}
        if first:
            body.update(id=f"call_{index}", type="function")
            body["function"]["name"] = "get_weather"
        return chunk({"tool_calls": [body]})

    events, translator = stream(
        [
            chunk({"role": "assistant", "content": "Checking."}),
            call(0, "", first=True),
            call(0, '{"city":'),
            call(0, '"Paris"}'),
            call(1, '{"city":"Rome"}', first=True),
            chunk({}, "tool_calls"),
            usage_chunk(),
        ]
    )
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert added[1] == {
        "type": "function_call",
        "id": "fc_abc123_1",
        "call_id": "call_0",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    done = {e["item_id"]: e for e in events if e["type"] == "response.function_call_arguments.done"}
    assert done["fc_abc123_1"]["arguments"] == '{"city":"Paris"}'
    assert done["fc_abc123_2"]["arguments"] == '{"city":"Rome"}'
    final = translator.response()
    assert [(i["type"], i["status"]) for i in final["output"]] == [
        ("message", "completed"),
        ("function_call", "completed"),
        ("function_call", "completed"),
    ]
    assert final["output"][2]["call_id"] == "call_1"


def test_length_cutoff_stream() -> None:
    events, translator = stream(
        [chunk({"content": "Once upon"}), chunk({"content": " a"}, "length"), usage_chunk()]
    )
    assert types(events)[-2:] == ["response.output_item.done", "response.incomplete"]
    assert events[-2]["item"]["status"] == "incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["completed_at"] is None
    assert translator.response()["status"] == "incomplete"


def test_stream_without_usage_or_done() -> None:
    events, translator = stream([chunk({"content": "x"}), chunk({}, "stop")], done=False)
    assert events[-1]["type"] == "response.completed"
    assert "usage" not in events[-1]["response"]
    assert translator.finish() == []  # idempotent
    assert translator.feed(Event(None, json.dumps(chunk({"content": "late"})).encode())) == []


def test_empty_stream_has_an_empty_message() -> None:
    events, translator = stream([])
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert translator.response()["output"][0]["content"][0]["text"] == ""


def test_reasoning_and_refusal_stream() -> None:
    events, translator = stream(
        [
            chunk({"reasoning_content": "Let me"}),
            chunk({"reasoning_content": " think."}),
            chunk({"content": "No"}),
            chunk({"refusal": "I won't."}),
            chunk({}, "stop"),
        ]
    )
    assert "response.reasoning_text.delta" in types(events)
    reasoning_done = next(e for e in events if e["type"] == "response.reasoning_text.done")
    assert reasoning_done["text"] == "Let me think."
    refusal_done = next(e for e in events if e["type"] == "response.refusal.done")
    assert (refusal_done["refusal"], refusal_done["content_index"]) == ("I won't.", 1)
    final = translator.response()
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "Let me think."}]
    assert final["output"][1]["content"][1] == {"type": "refusal", "refusal": "I won't."}


def test_upstream_error_fails_the_response() -> None:
    error = {"error": {"message": "backend crashed", "type": "api_error", "code": None}}
    events, translator = stream([chunk({"content": "partial"}), error, chunk({"content": "x"})])
    assert types(events)[-1] == "response.failed"
    assert "response.output_item.done" not in types(events)
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "backend crashed"}
    assert failed["output"][0]["status"] == "incomplete"
    assert translator.response() == failed
    limited = {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}
    events, _ = stream([limited])
    assert types(events) == ["response.created", "response.in_progress", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


def test_translating_stream_on_raw_bytes() -> None:
    translator = ChatStreamToResponses(REQUEST, response_id=RID, created_at=100)
    converter = TranslatingStream(translator)
    body = b"".join(
        b"data: " + json.dumps(c).encode() + b"\n\n"
        for c in [chunk({"content": "hi"}), chunk({}, "stop"), usage_chunk()]
    )
    out = converter.feed(body[:17]) + converter.feed(body[17:] + b"data: [DONE]\n\n")
    out += converter.finish()
    names = [e.name for e in SSEParser().feed(out)]
    assert names[0] == "response.created"
    assert names[-1] == "response.completed"
    assert translator.response()["status"] == "completed"


def test_the_stream_and_the_body_translate_alike() -> None:
    calls = [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    body = respond(
        completion(
            {"content": "ok", "reasoning_content": "hm", "tool_calls": calls}, "tool_calls", USAGE
        )
    )
    _, translator = stream(
        [
            chunk({"reasoning_content": "hm"}),
            chunk({"content": "ok"}),
            chunk({"tool_calls": [{"index": 0, **calls[0]}]}),
            chunk({}, "tool_calls"),
            usage_chunk(),
        ]
    )
    streamed = translator.response()
    assert streamed["output"] == body["output"]
    assert streamed["usage"] == body["usage"]


def test_validation_catches_a_bad_event() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(
            "ResponseStreamEvent",
            {
                "type": "response.output_text.delta",
                "item_id": "m",
                "output_index": 0,
                "content_index": 0,
                "delta": "x",
                "sequence_number": 0,
            },
        )  # no logprobs


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=8),
    st.sampled_from(["stop", "length"]),
)
def test_text_deltas_concatenate_to_the_text(pieces: list[str], finish: str) -> None:
    chunks = [chunk({"content": p}) for p in pieces] + [chunk({}, finish)]
    events, translator = stream(chunks)
    text = "".join(pieces)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == pieces
    assert next(e for e in events if e["type"] == "response.output_text.done")["text"] == text
    final = translator.response()
    assert final["output"][0]["content"][0]["text"] == text
    body = chat_response_to_response(
        completion({"content": text}, finish), REQUEST, response_id=RID, created_at=100
    )
    assert final["output"] == body["output"]


def test_the_openai_sdk_reads_the_translations() -> None:
    """The official client parses the body and accumulates the stream into the same answer."""
    httpx = pytest.importorskip("httpx")
    openai = pytest.importorskip("openai")
    request = {"model": "m", "input": "hi", "tools": [{**FUNCTION_TOOL, "strict": False}]}
    calls = [{"id": "call_a", "type": "function", "function": {"name": "get_weather"}}]

    def handler(http_request: Any) -> Any:
        if json.loads(http_request.content).get("stream"):
            translator = ChatStreamToResponses(request, response_id=RID, created_at=100)
            raw = b"".join(
                out
                for c in [
                    chunk({"content": "Hel"}),
                    chunk({"content": "lo"}),
                    chunk({"tool_calls": [{"index": 0, **calls[0]}]}),
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}),
                    chunk({}, "tool_calls"),
                    usage_chunk(),
                ]
                for out in translator.feed(Event(None, json.dumps(c).encode()))
            )
            raw += b"".join(translator.finish())
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)
        body = completion({"content": "Hello", "tool_calls": []}, "stop", USAGE)
        return httpx.Response(
            200, json=chat_response_to_response(body, request, response_id=RID, created_at=100)
        )

    client = openai.OpenAI(
        api_key="k",
        base_url="http://gateway.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    plain = client.responses.create(model="m", input="hi")
    assert plain.output_text == "Hello"
    assert plain.usage.input_tokens_details.cached_tokens == 8
    with client.responses.stream(model="m", input="hi") as events:
        final = events.get_final_response()
    assert final.output_text == "Hello"
    assert final.status == "completed"
    assert final.output[-1].type == "function_call"
    assert final.output[-1].arguments == '{"a":1}'


words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=15)
call_ids = st.from_regex(r"call_[a-z0-9]{1,8}", fullmatch=True)


@st.composite
def items(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A stateless conversation as Responses items: user and assistant messages, reasoning,
    function calls and their outputs."""
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["user", "assistant", "reasoning", "calls"]))
        if kind == "user":
            out.append({"role": "user", "content": draw(words)})
        elif kind == "assistant":
            part = {"type": "output_text", "text": draw(words), "annotations": []}
            out.append({"type": "message", "role": "assistant", "content": [part]})
        elif kind == "reasoning":
            out.append({"type": "reasoning", "id": "rs_1", "summary": []})
        else:
            ids = draw(st.lists(call_ids, min_size=1, max_size=3, unique=True))
            out += [
                {"type": "function_call", "call_id": i, "name": "f", "arguments": "{}"} for i in ids
            ]
            out += [
                {"type": "function_call_output", "call_id": i, "output": draw(words)} for i in ids
            ]
    return out


@settings(max_examples=80, deadline=None)
@given(items())
def test_items_keep_their_order_and_ids(conversation: list[dict[str, Any]]) -> None:
    """Every text and call id survives, in order; reasoning is dropped; function calls join
    the assistant message before them."""
    messages = responses_request_to_chat({"model": "m", "input": conversation})["messages"]
    expected: list[tuple[Any, ...]] = []
    for item in conversation:
        if item.get("type") == "function_call":
            expected.append(("call", item["call_id"]))
        elif item.get("type") == "function_call_output":
            expected.append(("tool", item["call_id"], item["output"]))
        elif item.get("role") == "user":
            expected.append(("user", item["content"]))
        elif item.get("role") == "assistant":
            expected.append(("assistant", item["content"][0]["text"]))
    got: list[tuple[Any, ...]] = []
    for m in messages:
        if m["role"] == "tool":
            got.append(("tool", m["tool_call_id"], m["content"]))
            continue
        if m["content"] is not None:
            got.append((m["role"], m["content"]))
        got += [("call", c["id"]) for c in m.get("tool_calls") or []]
    assert got == expected
    for before, after in itertools.pairwise(messages):
        if after.get("tool_calls") and after["content"] is None:  # calls with no text before
            assert before["role"] != "assistant" or "tool_calls" in before


def split(draw: st.DrawFn, value: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(value)), max_size=4)))
    bounds = [0, *cuts, len(value)]
    return [value[a:b] for a, b in itertools.pairwise(bounds) if value[a:b]]


@st.composite
def chat_answers(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A chat answer (text and/or tool calls) and a stream of chunks that adds up to it."""
    text = draw(st.one_of(st.none(), words))
    arguments = [
        json.dumps(draw(st.dictionaries(names_, st.integers(), max_size=2)))
        for _ in range(draw(st.integers(0 if text else 1, 3)))
    ]
    finish = draw(st.sampled_from(["stop", "length", "tool_calls"]))
    calls: list[dict[str, Any]] = [
        {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": a}}
        for i, a in enumerate(arguments)
    ]
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in split(draw, text or "")]
    for i, call in enumerate(calls):
        head = {"index": i, "id": call["id"], "type": "function", "function": {"name": "f"}}
        chunks.append(chunk({"tool_calls": [head]}))
        chunks += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            for piece in split(draw, call["function"]["arguments"])
        ]
    chunks += [chunk({}, finish), usage_chunk()]
    message: dict[str, Any] = {"content": text}
    if calls:
        message["tool_calls"] = calls
    return completion(message, finish, USAGE), chunks


names_ = st.from_regex(r"[a-z]{1,6}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(chat_answers())
def test_a_streamed_answer_ends_as_the_same_response(
    answer: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    body, chunks = answer
    _, translator = stream(chunks)
    streamed = translator.response()
    validate("Response", streamed)
    expected = respond(body)
    for key in ("status", "output", "usage", "incomplete_details"):
        assert streamed[key] == expected[key]
