"""Tool calls out of streamed deltas and whole messages, including the shapes real backends
send that bend the OpenAI format (vLLM's reused index, missing ids and arguments)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.agents.base import ToolCall
from gateway.agents.toolcalls import ToolCallAssembler, calls_in_message, fallback_id


def assembled(*chunks: Sequence[Mapping[str, Any]], seed: str = "req") -> list[ToolCall]:
    """The calls of a stream whose chunks carried ``chunks`` as ``delta.tool_calls``."""
    assembler = ToolCallAssembler(seed)
    for deltas in chunks:
        assembler.feed(deltas)
    return assembler.calls()


def first(index: int | None, call_id: str, name: str, arguments: Any = "") -> dict[str, Any]:
    delta: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    if index is not None:
        delta["index"] = index
    return delta


def fragment(index: int | None, arguments: Any, call_id: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {"function": {"arguments": arguments}}
    if index is not None:
        delta["index"] = index
    if call_id is not None:
        delta["id"] = call_id
    return delta


def test_openai_deltas_build_one_call() -> None:
    assembler = ToolCallAssembler("req")
    assert not assembler.started

    assembler.feed([first(0, "call_a", "calculator")])
    assert assembler.started
    assembler.feed([fragment(0, '{"expres')])
    assembler.feed([fragment(0, 'sion": "1+')])
    assembler.feed([fragment(0, '2"}')])

    assert assembler.calls() == [ToolCall("call_a", "calculator", '{"expression": "1+2"}')]


def test_two_parallel_calls_interleaved_by_index() -> None:
    calls = assembled(
        [first(0, "call_a", "calculator"), first(1, "call_b", "current_time")],
        [fragment(1, '{"timezone": ')],
        [fragment(0, '{"expression": "2*3"}')],
        [fragment(1, '"UTC"}')],
    )

    assert calls == [
        ToolCall("call_a", "calculator", '{"expression": "2*3"}'),
        ToolCall("call_b", "current_time", '{"timezone": "UTC"}'),
    ]


def test_index_zero_reused_with_a_new_id_starts_a_second_call() -> None:
    # vLLM: both calls on index 0, told apart only by the second one's new id; continuation
    # fragments come with an empty id.
    calls = assembled(
        [first(0, "call_a", "calculator")],
        [fragment(0, '{"expression": "1"}', call_id="")],
        [first(0, "call_b", "current_time")],
        [fragment(0, '{"timezone": "UTC"}', call_id="")],
    )

    assert calls == [
        ToolCall("call_a", "calculator", '{"expression": "1"}'),
        ToolCall("call_b", "current_time", '{"timezone": "UTC"}'),
    ]


def test_an_id_repeated_on_every_fragment_stays_one_call() -> None:
    calls = assembled(
        [first(0, "call_a", "calculator")],
        [fragment(0, '{"expression": ', call_id="call_a")],
        [fragment(0, '"4"}', call_id="call_a")],
    )

    assert calls == [ToolCall("call_a", "calculator", '{"expression": "4"}')]


def test_an_id_arriving_after_the_name_is_kept() -> None:
    calls = assembled(
        [{"index": 0, "function": {"name": "calculator", "arguments": ""}}],
        [fragment(0, '{"expression": "5"}', call_id="call_late")],
    )

    assert calls == [ToolCall("call_late", "calculator", '{"expression": "5"}')]


def test_missing_index_follows_the_ids() -> None:
    calls = assembled(
        [first(None, "call_a", "calculator")],
        [fragment(None, '{"expression": "7"}')],
        [first(None, "call_b", "current_time")],
        [fragment(None, "{}")],
    )

    assert calls == [
        ToolCall("call_a", "calculator", '{"expression": "7"}'),
        ToolCall("call_b", "current_time", "{}"),
    ]


def test_missing_index_with_the_id_repeated_stays_one_call() -> None:
    calls = assembled(
        [first(None, "call_a", "calculator")],
        [fragment(None, '{"expression": ', call_id="call_a")],
        [fragment(None, '"8"}', call_id="call_a")],
    )

    assert calls == [ToolCall("call_a", "calculator", '{"expression": "8"}')]


def test_missing_or_empty_arguments_are_an_empty_object() -> None:
    calls = assembled(
        [
            {"index": 0, "id": "call_a", "function": {"name": "current_time"}},
            first(1, "call_b", "current_time", ""),
            first(2, "call_c", "current_time", "   "),
        ],
    )

    assert [c.arguments for c in calls] == ["{}", "{}", "{}"]
    assert [c.id for c in calls] == ["call_a", "call_b", "call_c"]


def test_arguments_sent_as_an_object_become_json_text() -> None:
    calls = assembled([first(0, "call_a", "calculator", {"expression": "1+1"})])

    assert len(calls) == 1
    assert json.loads(calls[0].arguments) == {"expression": "1+1"}


def test_a_call_without_id_gets_a_stable_fallback() -> None:
    def stream() -> list[ToolCall]:
        return assembled(
            [{"index": 0, "function": {"name": "calculator", "arguments": '{"expression": "1"}'}}],
            seed="req-7",
        )

    calls = stream()
    assert calls[0].id == fallback_id("req-7", 0)
    assert calls[0].id.startswith("call_")
    assert stream()[0].id == calls[0].id
    assert fallback_id("req-8", 0) != calls[0].id


def test_nameless_fragments_are_dropped() -> None:
    calls = assembled([fragment(3, '{"orphan": true}')])

    assert calls == []


def test_the_first_name_wins() -> None:
    calls = assembled(
        [first(0, "call_a", "calculator")],
        [{"index": 0, "function": {"name": "other", "arguments": "{}"}}],
    )

    assert [c.name for c in calls] == ["calculator"]


def test_calls_in_a_whole_message() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "3"}'},
            },
            {"type": "function", "function": {"name": "current_time", "arguments": ""}},
            {"id": "", "type": "function", "function": {"name": "current_time"}},
            {"id": "call_d", "function": {"name": "calculator", "arguments": {"expression": "4"}}},
        ],
    }

    calls = calls_in_message(message, seed="req-1")

    assert calls[0] == ToolCall("call_a", "calculator", '{"expression": "3"}')
    assert calls[1] == ToolCall(fallback_id("req-1", 1), "current_time", "{}")
    assert calls[2] == ToolCall(fallback_id("req-1", 2), "current_time", "{}")
    assert calls[3].id == "call_d"
    assert json.loads(calls[3].arguments) == {"expression": "4"}
    # Stable: the same message gives the same ids.
    assert calls_in_message(message, seed="req-1") == calls


def test_calls_in_message_skips_what_is_not_a_call() -> None:
    assert calls_in_message({"role": "assistant", "content": "hi"}) == []
    assert calls_in_message({"tool_calls": "nonsense"}) == []
    message = {
        "tool_calls": [
            "nonsense",
            {"id": "call_x", "function": "nonsense"},
            {"id": "call_y", "function": {"arguments": "{}"}},
            {"id": "call_z", "function": {"name": "calculator", "arguments": None}},
        ]
    }

    assert calls_in_message(message) == [ToolCall("call_z", "calculator", "{}")]


def test_message_part_round_trips() -> None:
    call = ToolCall("call_a", "calculator", '{"expression": "9"}')

    assert calls_in_message({"tool_calls": [call.message_part()]}) == [call]
