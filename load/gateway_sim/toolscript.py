"""Tool scripts: the prompt tells the simulated model which tools to call, step by step.

An agent loop (model call, tool calls, results appended, model call again) needs a model whose
every step is known in advance, so tests can assert what came back and benchmarks can run a fixed
number of steps. The last user message carries the script as directives:

- ``[[tools: NAME {json args} | NAME2 {json args}]]``: one step calling these tools (in parallel
  when several, in one assistant message). Several blocks are successive steps: block k serves
  step k, where k is the number of assistant messages with tool calls after that user message.
  The arguments may be left out (``{}``).
- ``[[tools-forever: NAME {json args}]]``: once the blocks are used, every step calls these
  tools again (never answers), to test step, cost and time limits.
- ``[[answer: some text]]``: the final answer once the script is done.
- ``[[quirk: vllm]]``: stream tool calls as vLLM sometimes does: every call on ``index`` 0, each
  new call marked by a new ``id``, and ``"arguments": ""`` for a call whose arguments are ``{}``.

Only tools the request offers are called; a request offering none (or with ``tool_choice``
``none``) is answered in text at once. The answer after tool results is ``"<answer or 'Done.'>
Tool results: <r1>; <r2>"`` built from the last round's results, with or without a script, so a
test can see that the calculator's ``42`` came back. Requests without directives are otherwise
answered as before (:func:`gateway_sim.generation.plan_tool_call`, generated text).

"The last user message" is the last ``user`` message in chat, and in Messages the last user turn
that holds no ``tool_result`` block (tool results travel in user turns there). Call ids are
deterministic per conversation (the position and text of that message), step and index.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.schemas.openai import ChatMessage
from gateway_sim.generation import Generation, ToolCallPlan, ToolChoice, plan_tool_call
from gateway_sim.tokens import content_text, split_tokens

_DIRECTIVE = re.compile(r"\[\[\s*(tools-forever|tools|answer|quirk)\s*:")
_NAME = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*")
_WORD = re.compile(r"\s*\S+")
_QUIRKS = frozenset({"vllm"})
_decoder = json.JSONDecoder()

Call = tuple[str, str]
"""A scripted call: the tool's name and its arguments as JSON text."""


class ScriptError(ValueError):
    """A malformed directive (the simulator answers 400 naming ``messages``)."""


@dataclass(frozen=True, slots=True)
class Script:
    """The directives of a user message.

    Attributes:
        steps: the calls of each ``[[tools: ...]]`` block, in order.
        forever: the calls of ``[[tools-forever: ...]]`` (empty when absent).
        answer: the ``[[answer: ...]]`` text, if any.
        quirks: the ``[[quirk: ...]]`` names.
    """

    steps: tuple[tuple[Call, ...], ...] = ()
    forever: tuple[Call, ...] = ()
    answer: str | None = None
    quirks: frozenset[str] = frozenset()

    @property
    def calls_tools(self) -> bool:
        """Whether the script decides the tool calls (else they are planned as without one)."""
        return bool(self.steps or self.forever)

    def calls_at(self, step: int) -> tuple[Call, ...]:
        """The calls of step ``step`` (counted from 0); none once the script is done."""
        return self.steps[step] if step < len(self.steps) else self.forever


def _read_calls(text: str, pos: int) -> tuple[tuple[Call, ...], int]:
    """Parse ``NAME {args} | NAME2 {args}]]`` from ``pos``; returns the calls and the end."""
    calls = []
    while True:
        name = _NAME.match(text, pos)
        if name is None:
            raise ScriptError(f"a tool name is expected at offset {pos} of the tool script")
        pos = name.end()
        # Arguments are a JSON object or nothing (``{}``); anything else is not a call.
        args: dict[str, Any] = {}
        if text.startswith("{", pos):
            try:
                args, pos = _decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise ScriptError(f"bad JSON arguments for `{name[1]}`: {exc.msg}") from None
        calls.append((name[1], json.dumps(args)))
        while text[pos : pos + 1].isspace():
            pos += 1
        if text.startswith("|", pos):
            pos += 1
        elif text.startswith("]]", pos):
            return tuple(calls), pos + 2
        else:
            raise ScriptError(f"`|` or `]]` expected after the call of `{name[1]}`")


@functools.lru_cache(maxsize=256)
def parse_script(text: str) -> Script | None:
    """The directives in ``text``; ``None`` when it has none. Cached: an agent loop sends the
    same user message at every step.

    Raises:
        ScriptError: a directive is malformed, unknown quirk, or a second ``tools-forever`` or
            ``answer``.
    """
    steps: list[tuple[Call, ...]] = []
    forever: tuple[Call, ...] = ()
    answer: str | None = None
    quirks: set[str] = set()
    found = False
    pos = 0
    while (match := _DIRECTIVE.search(text, pos)) is not None:
        found = True
        kind, pos = match[1], match.end()
        if kind in ("tools", "tools-forever"):
            calls, pos = _read_calls(text, pos)
            if kind == "tools":
                steps.append(calls)
            elif forever:
                raise ScriptError("the tool script has two `tools-forever` directives")
            else:
                forever = calls
            continue
        close = text.find("]]", pos)
        if close < 0:
            raise ScriptError(f"`[[{kind}:` is not closed by `]]`")
        body, pos = text[match.end() : close].strip(), close + 2
        if kind == "answer":
            if answer is not None:
                raise ScriptError("the tool script has two `answer` directives")
            answer = body
        else:
            names = {q.strip() for q in body.split(",") if q.strip()}
            if unknown := names - _QUIRKS:
                raise ScriptError(f"unknown quirk `{sorted(unknown)[0]}`; known: vllm")
            quirks |= names
    if not found:
        return None
    return Script(tuple(steps), forever, answer, frozenset(quirks))


@dataclass(frozen=True, slots=True)
class Turn:
    """What a tool script needs from a conversation.

    Attributes:
        script: the last user message's directives, if any.
        conversation: identifies the conversation (seeds the call ids).
        steps: assistant messages with tool calls after the last user message.
        results: the texts of the last round of tool results after it.
    """

    script: Script | None
    conversation: str
    steps: int
    results: tuple[str, ...]


class Turnlike(Protocol):
    """A Messages API turn."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str | list[dict[str, Any]]: ...


def _turn(text: str, position: int, steps: int, results: list[str]) -> Turn:
    script = parse_script(text) if "[[" in text else None
    return Turn(script, f"{position}\x1f{text}", steps, tuple(results))


def chat_turn(messages: Sequence[ChatMessage]) -> Turn:
    """The turn of a chat conversation (OpenAI messages).

    Raises:
        ScriptError: the script is malformed.
    """
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), -1)
    steps, round_at = 0, last + 1
    for i in range(last + 1, len(messages)):
        if messages[i].role == "assistant" and messages[i].tool_calls:
            steps, round_at = steps + 1, i + 1
    # Only the last round's results are read: a long loop's earlier ones are never rendered.
    results = [content_text(m.content) for m in messages[round_at:] if m.role == "tool"]
    text = content_text(messages[last].content) if last >= 0 else ""
    return _turn(text, last, steps, results)


def _has_tool_results(turn: Turnlike) -> bool:
    return not isinstance(turn.content, str) and any(
        b.get("type") == "tool_result" for b in turn.content
    )


def messages_turn(messages: Sequence[Turnlike]) -> Turn:
    """The turn of a Messages API conversation.

    Raises:
        ScriptError: the script is malformed.
    """
    last = next(
        (
            i
            for i in range(len(messages) - 1, -1, -1)
            if messages[i].role == "user" and not _has_tool_results(messages[i])
        ),
        -1,
    )
    steps, round_at = 0, last + 1
    for i in range(last + 1, len(messages)):
        m = messages[i]
        if (
            m.role == "assistant"
            and not isinstance(m.content, str)
            and any(b.get("type") == "tool_use" for b in m.content)
        ):
            steps, round_at = steps + 1, i + 1
    results = [
        content_text(b.get("content"))
        for m in messages[round_at:]
        if m.role == "user" and not isinstance(m.content, str)
        for b in m.content
        if b.get("type") == "tool_result"
    ]
    text = content_text(messages[last].content) if last >= 0 else ""
    return _turn(text, last, steps, results)


@dataclass(frozen=True, slots=True)
class ToolStep:
    """One model step calling tools: the output the APIs render and the engine times.

    Each token is a fragment of a call's JSON arguments (a call with none still takes one, empty);
    :meth:`piece` tells which call a token belongs to and whether it opens that call.

    Attributes:
        calls: the calls, in order.
        tokens: every call's argument fragments, call after call.
        one_index: stream every call on ``index`` 0 (vLLM's quirk).
    """

    calls: tuple[ToolCallPlan, ...]
    tokens: list[str]
    owners: tuple[int, ...]
    opens: frozenset[int]
    one_index: bool = False

    @classmethod
    def of(cls, calls: Sequence[ToolCallPlan], *, one_index: bool = False) -> ToolStep:
        """The step making ``calls``."""
        tokens: list[str] = []
        owners: list[int] = []
        opens = []
        for i, call in enumerate(calls):
            opens.append(len(tokens))
            pieces = split_tokens(call.arguments) or [""]
            tokens += pieces
            owners += [i] * len(pieces)
        return cls(tuple(calls), tokens, tuple(owners), frozenset(opens), one_index)

    def piece(self, token: int) -> tuple[int, bool, str]:
        """Token ``token``: the index of its call, whether it opens that call, its fragment."""
        return self.owners[token], token in self.opens, self.tokens[token]


def call_id(turn: Turn, step: int, index: int) -> str:
    """The hex id of call ``index`` of step ``step`` of ``turn``'s conversation."""
    seed = f"{turn.conversation}\x1f{step}\x1f{index}"
    return hashlib.sha256(seed.encode()).hexdigest()[:24]


def final_text(answer: str | None, results: Sequence[str]) -> str | None:
    """The answer once no tool is called: ``answer``, followed by the tool results if any."""
    if results:
        return f"{answer or 'Done.'} Tool results: {'; '.join(results)}"
    return answer


def decide(
    turn: Turn,
    tools: Sequence[tuple[str, Any]],
    choice: ToolChoice,
    prompt: str,
    last_is_user: bool,
) -> ToolStep | str | None:
    """What the model does at this step, given the offered ``(name, JSON Schema)`` tools.

    Returns:
        The tools to call; or the final answer text; or ``None``: generate text as usual.
    """
    script = turn.script or Script()
    vllm = "vllm" in script.quirks

    def plan(call: ToolCallPlan) -> ToolCallPlan:
        if vllm and call.arguments == "{}":
            return ToolCallPlan(call.id, call.name, "")
        return call

    if script.calls_tools:
        offered = {name for name, _ in tools} if choice.mode != "none" else set()
        chosen = [c for c in script.calls_at(turn.steps) if c[0] in offered]
        if chosen:
            calls = [
                plan(ToolCallPlan(call_id(turn, turn.steps, i), name, args))
                for i, (name, args) in enumerate(chosen)
            ]
            return ToolStep.of(calls, one_index=vllm)
        return final_text(script.answer or "Done.", turn.results)
    if turn.script is not None:  # a script without tool steps answers: no random calls
        return final_text(script.answer, turn.results)
    call = plan_tool_call(prompt, tools, choice, last_is_user)
    if call is not None:
        return ToolStep.of([plan(call)], one_index=vllm)
    return final_text(script.answer, turn.results)


def answer_output(text: str, max_tokens: int | None) -> Generation:
    """``text`` as generated output (a word a token), cut at ``max_tokens``."""
    tokens = _WORD.findall(text)
    if max_tokens is not None and len(tokens) > max_tokens:
        return Generation(tokens[:max_tokens], "length")
    return Generation(tokens, "stop")
