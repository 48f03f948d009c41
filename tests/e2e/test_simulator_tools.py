"""Tool scripts (docs/simulator.md): agent loops against the simulator served on loopback, with the
official openai and anthropic SDKs as clients and raw SSE read with httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import anthropic
import httpx
import openai
import pytest
from anthropic.types import Message, MessageParam, ToolParam, ToolUseBlock
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)

from tests.support.servers import Sim, http_json, running_sim
from tests.support.spec import validate

CALC = 'Compute. [[tools: calculator {"expr": "6*7"}]] [[answer: The answer is in.]]'


def function(name: str, **properties: str) -> ChatCompletionFunctionToolParam:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {k: {"type": v} for k, v in properties.items()},
    }
    return {"type": "function", "function": {"name": name, "parameters": schema}}


TOOLS = [function("calculator", expr="string"), function("search", q="string")]
ANTHROPIC_TOOLS: list[ToolParam] = [
    {"name": t["function"]["name"], "input_schema": dict(t["function"].get("parameters", {}))}
    for t in TOOLS
]


def execute(name: str, arguments: dict[str, Any]) -> str:
    """The tools of these loops: a calculator that knows one sum, a search that echoes."""
    if name == "calculator":
        return "42" if arguments.get("expr") == "6*7" else "?"
    return f"found {arguments.get('q', 'nothing')}"


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with running_sim() as s:
        yield s


@pytest.fixture(scope="module")
def oai(sim: Sim) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{sim.url}/v1", api_key="x", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def claude(sim: Sim) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0) as c:
        yield c


def function_calls(reply: ChatCompletion) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = reply.choices[0].message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return cast(list[ChatCompletionMessageFunctionToolCall], calls)


def chat_loop(
    oai: openai.OpenAI, content: str, *, steps: int = 6, stream: bool = False
) -> tuple[str | None, list[list[str]]]:
    """Run an agent loop of at most ``steps`` model calls; returns the final text (``None`` if
    the model was still calling tools) and the names called at each step."""
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": content}]
    called: list[list[str]] = []
    for _ in range(steps):
        if stream:
            with oai.chat.completions.stream(
                model="sim-model", messages=messages, tools=TOOLS
            ) as s:
                reply: ChatCompletion = s.get_final_completion()
        else:
            reply = oai.chat.completions.create(model="sim-model", messages=messages, tools=TOOLS)
        calls = function_calls(reply)
        if not calls:
            assert reply.choices[0].finish_reason == "stop"
            return reply.choices[0].message.content, called
        assert reply.choices[0].finish_reason == "tool_calls"
        called.append([c.function.name for c in calls])
        messages.append(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in calls
                ],
            }
        )
        for c in calls:
            result = execute(c.function.name, json.loads(c.function.arguments))
            messages.append({"role": "tool", "tool_call_id": c.id, "content": result})
    return None, called


def sse(client: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST ``body`` as a stream and return its decoded ``data:`` payloads, ``[DONE]`` left out."""
    with client.stream("POST", path, json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]" or path == "/v1/messages"
    return [json.loads(line) for line in lines if line != "[DONE]"]


@pytest.fixture(scope="module")
def raw(sim: Sim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=30) as c:
        yield c


def test_plain_call_has_openai_shape_and_counted_usage(
    oai: openai.OpenAI, raw: httpx.Client
) -> None:
    body = {"model": "sim-model", "messages": [{"role": "user", "content": CALC}], "tools": TOOLS}
    resp = raw.post("/v1/chat/completions", json=body)
    validate("CreateChatCompletionResponse", resp.json())
    message = resp.json()["choices"][0]["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_")
    assert len(call["id"]) == 29
    assert call["type"] == "function"
    assert call["function"] == {"name": "calculator", "arguments": '{"expr": "6*7"}'}
    reply = oai.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": CALC}], tools=TOOLS
    )
    assert [c.id for c in function_calls(reply)] == [call["id"]]  # deterministic
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 4  # 15 characters of arguments, 4 per token
    assert reply.usage.prompt_tokens > 0


def test_agent_loop_successive_steps_and_answer_echoing_results(oai: openai.OpenAI) -> None:
    script = (
        '[[tools: calculator {"expr": "6*7"} | search {"q": "life"}]] '
        '[[tools: search {"q": "more"}]] [[answer: Here you go.]]'
    )
    for stream in (False, True):
        answer, called = chat_loop(oai, script, stream=stream)
        assert called == [["calculator", "search"], ["search"]]
        # Only the last round's results come back.
        assert answer == "Here you go. Tool results: found more"
    answer, called = chat_loop(oai, CALC)
    assert (answer, called) == ("The answer is in. Tool results: 42", [["calculator"]])


def test_streamed_calls_have_openai_delta_shape(raw: httpx.Client) -> None:
    body = {
        "model": "sim-model",
        "messages": [
            {"role": "user", "content": '[[tools: calculator {"expr": "6*7"} | search {"q": "x"}]]'}
        ],
        "tools": TOOLS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = sse(raw, "/v1/chat/completions", body)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    deltas = [
        d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    heads = [d for d in deltas if "id" in d]
    assert [(h["index"], h["type"], h["function"]) for h in heads] == [
        (0, "function", {"name": "calculator", "arguments": ""}),
        (1, "function", {"name": "search", "arguments": ""}),
    ]
    fragments = [d for d in deltas if "id" not in d]
    assert all(
        set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in fragments
    )
    by_index = {
        i: "".join(d["function"]["arguments"] for d in fragments if d["index"] == i) for i in (0, 1)
    }
    assert by_index == {0: '{"expr": "6*7"}', 1: '{"q": "x"}'}
    assert sum(d["index"] == 0 for d in fragments) > 1
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == len(fragments)
    plain = raw.post("/v1/chat/completions", json={**body, "stream": False}).json()
    assert [c["id"] for c in plain["choices"][0]["message"]["tool_calls"]] == [
        h["id"] for h in heads
    ]


def test_vllm_quirk_streams_every_call_on_index_zero(raw: httpx.Client) -> None:
    content = '[[tools: calculator {"expr": "1+1"} | search | calculator {}]] [[quirk: vllm]]'
    body = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": content}],
        "tools": TOOLS,
        "stream": True,
    }
    chunks = sse(raw, "/v1/chat/completions", body)
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert {d["index"] for d in deltas} == {0}
    # Each new non-empty id opens the next call; what follows belongs to it.
    calls: list[dict[str, str]] = []
    for d in deltas:
        if d.get("id"):
            calls.append({"id": d["id"], "name": d["function"]["name"], "arguments": ""})
        calls[-1]["arguments"] += d["function"]["arguments"]
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("calculator", '{"expr": "1+1"}'),
        ("search", ""),
        ("calculator", ""),
    ]
    assert len({c["id"] for c in calls}) == 3
    plain = raw.post("/v1/chat/completions", json={**body, "stream": False}).json()
    arguments = [c["function"]["arguments"] for c in plain["choices"][0]["message"]["tool_calls"]]
    assert arguments == ['{"expr": "1+1"}', "", ""]


def test_tools_forever_until_a_request_without_tools(oai: openai.OpenAI) -> None:
    content = '[[tools-forever: calculator {"expr": "6*7"}]]'
    answer, called = chat_loop(oai, content, steps=5)
    assert answer is None
    assert called == [["calculator"]] * 5
    # The gateway's last call when a limit stops the loop: no tools, so the model answers.
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": content},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    final = oai.chat.completions.create(model="sim-model", messages=messages)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "Done. Tool results: 42"


def test_a_request_without_tools_answers_in_text(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": CALC}]
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content == "The answer is in."
    streamed = oai.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": CALC}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == (
        "The answer is in."
    )


def test_malformed_script_is_a_400_naming_messages(
    oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    bad = "[[tools: calculator {oops}]]"
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": bad}], tools=TOOLS
        )
    assert raised.value.param == "messages"
    assert "bad JSON" in raised.value.message
    with pytest.raises(anthropic.BadRequestError) as bad_messages:
        claude.messages.create(
            model="sim-model", max_tokens=20, messages=[{"role": "user", "content": bad}]
        )
    assert "messages: bad JSON" in bad_messages.value.message


def messages_loop(
    claude: anthropic.Anthropic, content: str, *, stream: bool, steps: int = 6
) -> tuple[str | None, list[list[str]]]:
    """:func:`chat_loop` over the Messages API."""
    messages: list[MessageParam] = [{"role": "user", "content": content}]
    called: list[list[str]] = []
    for _ in range(steps):
        message: Message
        if stream:
            with claude.messages.stream(
                model="sim-model", max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS
            ) as s:
                message = s.get_final_message()
        else:
            message = claude.messages.create(
                model="sim-model", max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS
            )
        uses = [b for b in message.content if isinstance(b, ToolUseBlock)]
        if not uses:
            assert message.stop_reason == "end_turn"
            assert message.content[0].type == "text"
            return message.content[0].text, called
        assert message.stop_reason == "tool_use"
        assert all(u.id.startswith("toolu_") for u in uses)
        called.append([u.name for u in uses])
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": u.id, "name": u.name, "input": u.input} for u in uses
                ],
            }
        )
        results = [
            {
                "type": "tool_result",
                "tool_use_id": u.id,
                "content": execute(u.name, cast(dict[str, Any], u.input)),
            }
            for u in uses
        ]
        messages.append({"role": "user", "content": cast(Any, results)})
    return None, called


def test_messages_loop_plain_and_streamed(claude: anthropic.Anthropic) -> None:
    script = (
        '[[tools: calculator {"expr": "6*7"} | search {"q": "life"}]] '
        "[[tools: search {}]] [[answer: Here.]]"
    )
    for stream in (False, True):
        answer, called = messages_loop(claude, script, stream=stream)
        assert called == [["calculator", "search"], ["search"]]
        assert answer == "Here. Tool results: found nothing"
    answer, called = messages_loop(claude, "[[tools-forever: search]]", stream=True, steps=4)
    assert (answer, called) == (None, [["search"]] * 4)


def test_messages_parallel_calls_stream_as_successive_blocks(
    claude: anthropic.Anthropic, raw: httpx.Client
) -> None:
    ask: list[MessageParam] = [
        {"role": "user", "content": '[[tools: calculator {"expr": "6*7"} | search]]'}
    ]
    body = {
        "model": "sim-model",
        "max_tokens": 50,
        "messages": ask,
        "tools": ANTHROPIC_TOOLS,
        "stream": True,
    }
    events = sse(raw, "/v1/messages", body)
    kinds = [(e["type"], e.get("index")) for e in events if e["type"] != "content_block_delta"]
    assert kinds == [
        ("message_start", None),
        ("content_block_start", 0),
        ("ping", None),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [(b["type"], b["name"], b["input"]) for b in starts] == [
        ("tool_use", "calculator", {}),
        ("tool_use", "search", {}),
    ]
    deltas = [e for e in events if e["type"] == "content_block_delta"]
    assert {d["delta"]["type"] for d in deltas} == {"input_json_delta"}
    joined = [
        "".join(d["delta"]["partial_json"] for d in deltas if d["index"] == i) for i in (0, 1)
    ]
    assert joined == ['{"expr": "6*7"}', "{}"]
    assert sum(d["index"] == 0 for d in deltas) > 1
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    plain = claude.messages.create(
        model="sim-model", max_tokens=50, messages=ask, tools=ANTHROPIC_TOOLS
    )
    assert plain.stop_reason == "tool_use"
    uses = [b for b in plain.content if isinstance(b, ToolUseBlock)]
    assert len(uses) == len(plain.content)
    assert [u.id for u in uses] == [s["id"] for s in starts]
    assert [u.input for u in uses] == [{"expr": "6*7"}, {}]
    assert plain.usage.output_tokens == len(deltas)


def test_messages_without_tools_answer_in_text(sim: Sim) -> None:
    status, _, body = http_json(
        "POST",
        f"{sim.url}/v1/messages",
        {"model": "sim-model", "max_tokens": 30, "messages": [{"role": "user", "content": CALC}]},
    )
    assert status == 200
    assert body["stop_reason"] == "end_turn"
    assert body["content"] == [{"type": "text", "text": "The answer is in."}]
