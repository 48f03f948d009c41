"""Tool scripts of the simulator: parsing directives and deciding each step of an agent loop."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from gateway_sim.anthropic_api import AnthropicMessage
from gateway_sim.generation import ToolChoice
from gateway_sim.toolscript import (
    Script,
    ScriptError,
    ToolStep,
    Turn,
    answer_output,
    chat_turn,
    decide,
    messages_turn,
    parse_script,
)

from gateway.schemas.openai import ChatMessage

CALC = ("calculator", {"type": "object", "properties": {"expr": {"type": "string"}}})
SEARCH = ("search", {"type": "object", "properties": {"q": {"type": "string"}}})
AUTO = ToolChoice()


def chat(*messages: dict[str, Any]) -> list[ChatMessage]:
    return msgspec.convert(list(messages), list[ChatMessage])


def anthropic(*messages: dict[str, Any]) -> list[AnthropicMessage]:
    return msgspec.convert(list(messages), list[AnthropicMessage])


def assistant_calls(*names: str) -> dict[str, Any]:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
        for i, n in enumerate(names)
    ]
    return {"role": "assistant", "content": None, "tool_calls": calls}


def tool(content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": "c0", "content": content}


def step_of(turn: Turn, *tools: tuple[str, Any], choice: ToolChoice = AUTO) -> ToolStep:
    step = decide(turn, tools, choice, "prompt", True)
    assert isinstance(step, ToolStep), step
    return step


def calls_of(step: ToolStep) -> list[tuple[str, Any]]:
    return [(c.name, json.loads(c.arguments or "{}")) for c in step.calls]


def test_text_without_directives_has_no_script() -> None:
    assert parse_script("What is 6*7? See [[Wiki]] and [[tool: x]].") is None


def test_steps_parallel_calls_forever_answer_and_quirk() -> None:
    script = parse_script(
        'Go. [[tools: calculator {"expr": "6*7"} | search {"q": "a | b ]] c"}]]\n'
        "[[ tools : search]] [[tools-forever: search {}]] [[answer: It is 42.]] [[quirk: vllm]]"
    )
    assert script == Script(
        steps=(
            (("calculator", '{"expr": "6*7"}'), ("search", '{"q": "a | b ]] c"}')),
            (("search", "{}"),),
        ),
        forever=(("search", "{}"),),
        answer="It is 42.",
        quirks=frozenset({"vllm"}),
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[tools: calculator {bad json}]]", "bad JSON"),
        ("[[tools: calculator [1, 2]]]", "`|` or `]]` expected"),
        ('[[tools: calculator "x"]]', "`|` or `]]` expected"),
        ("[[tools: ]]", "tool name is expected"),
        ("[[tools: a {} | ]]", "tool name is expected"),
        ("[[tools: a {}", "`|` or `]]` expected"),
        ("[[answer: never closed", "not closed"),
        ("[[quirk: sglang]]", "unknown quirk `sglang`"),
        ("[[tools-forever: a]] [[tools-forever: b]]", "two `tools-forever`"),
        ("[[answer: a]] [[answer: b]]", "two `answer`"),
    ],
)
def test_malformed_directives_are_errors(text: str, problem: str) -> None:
    with pytest.raises(ScriptError, match=problem):
        parse_script(text)


def test_chat_turn_counts_steps_after_the_last_user_message() -> None:
    turn = chat_turn(
        chat(
            {"role": "user", "content": "old [[tools: search]]"},
            assistant_calls("search"),
            tool("stale"),
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": [{"type": "text", "text": "[[tools: calculator]]"}]},
            assistant_calls("calculator", "search"),
            tool("first"),
            tool("second"),
            assistant_calls("calculator"),
            tool("42"),
        )
    )
    assert turn.script == Script(steps=((("calculator", "{}"),),))
    assert turn.steps == 2
    assert turn.results == ("42",)


def test_chat_turn_reads_text_parts_of_tool_results() -> None:
    parts = [{"type": "text", "text": "4"}, {"type": "text", "text": "2"}]
    turn = chat_turn(chat({"role": "user", "content": "q"}, assistant_calls("a"), tool(parts)))
    assert turn.script is None
    assert turn.results == ("4\n2",)


def test_messages_turn_skips_user_turns_carrying_tool_results() -> None:
    def use(name: str) -> dict[str, Any]:
        return {"type": "tool_use", "id": name, "name": name, "input": {}}

    def result(content: Any) -> dict[str, Any]:
        return {"type": "tool_result", "tool_use_id": "x", "content": content}

    turn = messages_turn(
        anthropic(
            {
                "role": "user",
                "content": [{"type": "text", "text": "[[tools: a | b]] [[tools: a]]"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Let me see."}, use("a")]},
            {"role": "user", "content": [result("one"), result([{"type": "text", "text": "two"}])]},
            {"role": "assistant", "content": [use("a")]},
            {"role": "user", "content": [result("42")]},
        )
    )
    assert turn.script is not None
    assert len(turn.script.steps) == 2
    assert turn.steps == 2
    assert turn.results == ("42",)
    plain = messages_turn(anthropic({"role": "user", "content": "[[answer: hi]]"}))
    assert plain.script == Script(answer="hi")
    assert (plain.steps, plain.results) == (0, ())


def test_successive_steps_then_the_answer_with_the_last_results() -> None:
    user = {"role": "user", "content": '[[tools: calculator {"expr": "6*7"}]] [[tools: search]]'}
    first = step_of(chat_turn(chat(user)), CALC, SEARCH)
    assert calls_of(first) == [("calculator", {"expr": "6*7"})]
    second = step_of(chat_turn(chat(user, assistant_calls("calculator"), tool("42"))), CALC, SEARCH)
    assert calls_of(second) == [("search", {})]
    done = chat_turn(
        chat(user, assistant_calls("calculator"), tool("42"), assistant_calls("search"), tool("x"))
    )
    assert decide(done, [CALC, SEARCH], AUTO, "p", False) == "Done. Tool results: x"


def test_parallel_calls_and_the_answer_directive() -> None:
    user = {"role": "user", "content": "[[tools: calculator | search]] [[answer: All done.]]"}
    step = step_of(chat_turn(chat(user)), CALC, SEARCH)
    assert [c.name for c in step.calls] == ["calculator", "search"]
    after = chat_turn(chat(user, assistant_calls("calculator", "search"), tool("1"), tool("2")))
    assert decide(after, [CALC, SEARCH], AUTO, "p", False) == "All done. Tool results: 1; 2"


def test_only_offered_tools_are_called() -> None:
    turn = chat_turn(chat({"role": "user", "content": "[[tools: calculator | search]]"}))
    assert calls_of(step_of(turn, SEARCH)) == [("search", {})]
    assert decide(turn, [], AUTO, "p", True) == "Done."
    assert decide(turn, [CALC], ToolChoice("none"), "p", True) == "Done."
    answered = chat_turn(chat({"role": "user", "content": "[[tools: x]] [[answer: No tools.]]"}))
    assert decide(answered, [CALC], AUTO, "p", True) == "No tools."


def test_tools_forever_never_answers_while_tools_are_offered() -> None:
    messages = [{"role": "user", "content": "[[tools: search]] [[tools-forever: calculator]]"}]
    for step in range(5):
        turn = chat_turn(chat(*messages))
        assert turn.steps == step
        made = step_of(turn, CALC, SEARCH)
        assert [c.name for c in made.calls] == ["search" if step == 0 else "calculator"]
        messages += [assistant_calls(made.calls[0].name), tool(str(step))]
    assert decide(chat_turn(chat(*messages)), [], AUTO, "p", False) == "Done. Tool results: 4"


def test_call_ids_are_deterministic_per_conversation_step_and_index() -> None:
    user = {"role": "user", "content": "[[tools: calculator | search]] [[tools: search]]"}
    first = step_of(chat_turn(chat(user)), CALC, SEARCH)
    again = step_of(chat_turn(chat(user)), CALC, SEARCH)
    second = step_of(chat_turn(chat(user, assistant_calls("calculator"), tool("1"))), CALC, SEARCH)
    other = step_of(chat_turn(chat({"role": "system", "content": "s"}, user)), CALC, SEARCH)
    ids = [c.id for c in first.calls]
    assert ids == [c.id for c in again.calls]
    assert len({*ids, second.calls[0].id, *(c.id for c in other.calls)}) == 5
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


def test_vllm_quirk_streams_on_one_index_and_empty_arguments() -> None:
    turn = chat_turn(
        chat(
            {
                "role": "user",
                "content": '[[tools: calculator {"expr": "1"} | search]] [[quirk: vllm]]',
            }
        )
    )
    step = step_of(turn, CALC, SEARCH)
    assert step.one_index
    assert [c.arguments for c in step.calls] == ['{"expr": "1"}', ""]
    # Without the quirk, {} is sent as such.
    plain = step_of(chat_turn(chat({"role": "user", "content": "[[tools: search]]"})), SEARCH)
    assert not plain.one_index
    assert plain.calls[0].arguments == "{}"


def test_a_step_streams_each_calls_arguments_in_fragments() -> None:
    turn = chat_turn(
        chat(
            {
                "role": "user",
                "content": '[[tools: calculator {"expr": "6*7"} | search]] [[quirk: vllm]]',
            }
        )
    )
    step = step_of(turn, CALC, SEARCH)
    pieces = [step.piece(t) for t in range(len(step.tokens))]
    assert "".join(f for c, _, f in pieces if c == 0) == '{"expr": "6*7"}'
    assert [p for p in pieces if p[1]] == [(0, True, '{"ex'), (1, True, "")]
    assert len([p for p in pieces if p[0] == 0]) > 2


def test_without_a_script_the_random_plan_and_generated_text_stay() -> None:
    turn = chat_turn(chat({"role": "user", "content": "What is 6*7?"}))
    planned = step_of(turn, CALC)
    assert planned.calls[0].name == "calculator"
    assert decide(turn, [CALC], AUTO, "prompt", False) is None
    assert decide(turn, [], AUTO, "prompt", True) is None
    after = chat_turn(
        chat({"role": "user", "content": "q"}, assistant_calls("calculator"), tool("42"))
    )
    assert decide(after, [CALC], AUTO, "prompt", False) == "Done. Tool results: 42"
    # `required` still calls a tool after results, as before.
    assert isinstance(decide(after, [CALC], ToolChoice("required"), "prompt", False), ToolStep)


def test_answer_output_is_words_cut_at_max_tokens() -> None:
    out = answer_output("Done. Tool results: 42", None)
    assert out.tokens == ["Done.", " Tool", " results:", " 42"]
    assert out.finish_reason == "stop"
    cut = answer_output("Done. Tool results: 42", 2)
    assert (cut.text, cut.finish_reason) == ("Done. Tool", "length")
