"""Chat Completions <-> Messages translation: property-based round trips and stream translation."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequestError
from gateway.sse import SSEParser
from gateway.translate.messages import (
    chat_request_to_messages,
    chat_response_to_messages,
    messages_request_to_chat,
    messages_response_to_chat,
)
from gateway.translate.streams import ChatStreamToMessages, MessagesStreamToChat

text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
names = st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True)
arguments = st.dictionaries(names, st.one_of(st.integers(), text, st.booleans()), max_size=3)


@st.composite
def tool_call(draw: st.DrawFn, n: int) -> dict[str, Any]:
    return {
        "id": f"call_{n}_{draw(names)}",
        "type": "function",
        "function": {"name": draw(names), "arguments": json.dumps(draw(arguments))},
    }


@st.composite
def conversation(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Alternating turns as Anthropic can hold them: a user turn (text, or tool results for the
    previous assistant's calls, then optional text), then an assistant turn (text and/or calls)."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    pending: list[str] = []
    for turn in range(draw(st.integers(1, 4))):
        for call_id in pending:
            messages.append({"role": "tool", "tool_call_id": call_id, "content": draw(text)})
        if not pending or draw(st.booleans()):
            content: Any = draw(
                st.one_of(
                    text,
                    st.lists(
                        text.map(lambda t: {"type": "text", "text": t}), min_size=1, max_size=3
                    ),
                )
            )
            messages.append({"role": "user", "content": content})
        calls = draw(st.lists(tool_call(turn), max_size=2, unique_by=lambda c: c["id"]))
        assistant: dict[str, Any] = {"role": "assistant"}
        if calls:
            assistant["content"] = draw(st.one_of(st.none(), text))
            assistant["tool_calls"] = calls
        else:
            assistant["content"] = draw(text)
        messages.append(assistant)
        pending = [c["id"] for c in calls]
    return messages


def normalised(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must survive: roles, text content, tool calls (arguments compared as JSON).

    A string and a list of text parts with the same texts are the same content: a user turn
    that Anthropic holds merged with tool results comes back as parts.
    """
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = tuple(p["text"] for p in content)
        elif isinstance(content, str):
            content = (content,)
        calls = tuple(
            (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in m.get("tool_calls") or []
        )
        out.append((m["role"], content or None, calls, m.get("tool_call_id")))
    return out


@settings(max_examples=150, deadline=None)
@given(conversation())
def test_chat_to_messages_and_back_keeps_roles_content_and_tool_calls(
    messages: list[dict[str, Any]],
) -> None:
    request = {"model": "m", "messages": messages, "max_tokens": 50}
    anthropic = chat_request_to_messages(request, default_max_tokens=1024)
    roles = [m["role"] for m in anthropic["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles)), "roles must alternate"
    back = messages_request_to_chat(anthropic)
    assert normalised(back["messages"]) == normalised(messages)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.none(), text),
    st.lists(tool_call(0), max_size=3, unique_by=lambda c: c["id"]),
    st.sampled_from(["stop", "length", "tool_calls"]),
    st.integers(0, 5000),
    st.integers(0, 500),
)
def test_responses_round_trip(
    content: str | None, calls: list[dict[str, Any]], reason: str, prompt: int, completion: int
) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    chat = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": reason}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    back = messages_response_to_chat(chat_response_to_messages(chat, "m"), created=1)
    got = back["choices"][0]
    assert got["finish_reason"] == reason
    assert normalised([got["message"]]) == normalised([message])
    assert back["usage"]["prompt_tokens"] == prompt
    assert back["usage"]["completion_tokens"] == completion


def test_images_tools_choice_and_policy() -> None:
    request = {
        "model": "m",
        "temperature": 1.7,
        "stop": "END",
        "user": "u1",
        "top_k": 5,
        "seed": 3,
        "parallel_tool_calls": False,
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            }
        ],
    }
    out = chat_request_to_messages(request, 256)
    assert out["max_tokens"] == 256
    assert out["temperature"] == 1.0
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "u1"}
    assert out["top_k"] == 5
    assert "seed" not in out
    assert out["tool_choice"] == {"type": "tool", "name": "f", "disable_parallel_tool_use": True}
    assert out["tools"][0]["input_schema"] == {"type": "object"}
    blocks = out["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": "QUJD"}
    assert blocks[2]["source"] == {"type": "url", "url": "https://x.test/a.png"}
    back = messages_request_to_chat(out)
    assert back["messages"][0]["content"][1]["image_url"]["url"] == "data:image/png;base64,QUJD"
    for choice, expected in (
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
    ):
        assert (
            chat_request_to_messages(
                {**request, "tool_choice": choice, "parallel_tool_calls": None}, 1
            )["tool_choice"]
            == expected
        )


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "a",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{oops"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_untranslatable_requests_are_400_naming_the_field(
    change: dict[str, Any], param: str
) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **change}
    with pytest.raises(InvalidRequestError) as raised:
        chat_request_to_messages(request, 10)
    assert raised.value.param == param


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)


def test_messages_stream_to_chat_chunks_with_tool_indexes() -> None:
    stream = sse(
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "model": "claude",
                    "usage": {"input_tokens": 7, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a"'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": ": 1}"},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "tool_use", "id": "t2", "name": "g", "input": {}},
            },
        ),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 9},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    )
    translator = MessagesStreamToChat(include_usage=True)
    parser = SSEParser()
    out = b"".join(
        b
        for i in range(0, len(stream), 7)  # arbitrary chunk boundaries
        for e in parser.feed(stream[i : i + 7])
        for b in translator.feed(e)
    )
    events = [e.data for e in SSEParser().feed(out)]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Hi"}
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [c["index"] for c in calls] == [0, 0, 0, 1]
    assert calls[0]["id"] == "t1"
    assert calls[3]["id"] == "t2"
    assert "".join(c["function"].get("arguments", "") for c in calls[:3]) == '{"a": 1}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 7
    assert chunks[-1]["usage"]["completion_tokens"] == 9


def test_chat_stream_to_messages_events() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n".encode()

    stream = (
        chunk({"role": "assistant", "content": ""})
        + chunk({"content": "Hel"})
        + chunk({"content": "lo"})
        + chunk(
            {"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{}"}}]}
        )
        + chunk({}, "tool_calls")
        + b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":5,'
        b'"completion_tokens":4}}\n\ndata: [DONE]\n\n'
    )
    translator = ChatStreamToMessages("claude-local")
    out = b"".join(b for e in SSEParser().feed(stream) for b in translator.feed(e))
    events = [(e.name, json.loads(e.data)) for e in SSEParser().feed(out)]
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[5][1]["content_block"] == {
        "type": "tool_use",
        "id": "t1",
        "name": "f",
        "input": {},
    }
    assert events[8][1]["delta"]["stop_reason"] == "tool_use"
    assert events[8][1]["usage"]["output_tokens"] == 4
    assert translator.finish() == []
