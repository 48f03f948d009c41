"""Deterministic text, tool calls and embeddings derived from the request.

Same request, same answer.

Token counting uses a documented estimate: one token per 4 characters of text (at least one per
non-empty text), plus 4 tokens of chat-template overhead per message, as a chat template would add.
Every generated word is exactly one token, so ``usage.completion_tokens`` equals the number of
words (and of streamed content chunks).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4

_WORDS = """
the gateway routes every request to a replica with warm cache and low queue so
tokens flow fast while batches fill each step of the engine keeps prefill short and
decode steady under load model serving needs fair scheduling honest metrics and
quick recovery when one backend fails or slows down
""".split()  # noqa: SIM905 - prose reads better than a 50-item list


def count_text_tokens(text: str) -> int:
    """Estimated tokens in ``text``: ceil(chars / 4)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "\n".join(parts)


def chat_prompt_text(messages: Sequence[Any]) -> str:
    """The conversation flattened to text (role, content, tool calls), the generator's seed."""
    lines = []
    for m in messages:
        lines.append(f"{m.role}: {_content_text(m.content)}")
        for call in m.tool_calls or ():
            lines.append(f"call {call.function.name}({call.function.arguments})")
    return "\n".join(lines)


def count_chat_tokens(messages: Sequence[Any]) -> int:
    """Prompt tokens of a chat: the text estimate of each message plus per-message overhead."""
    total = 0
    for m in messages:
        total += MESSAGE_OVERHEAD_TOKENS + count_text_tokens(_content_text(m.content))
        for call in m.tool_calls or ():
            total += count_text_tokens(call.function.name + call.function.arguments)
    return total


def _rng(*seed: object) -> random.Random:
    digest = hashlib.sha256(repr(seed).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True, slots=True)
class Generation:
    """Generated output: one token per word; ``finish_reason`` is ``stop`` or ``length``."""

    tokens: list[str]
    finish_reason: str

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def generate(
    prompt: str,
    max_tokens: int | None,
    choice: int = 0,
    *,
    stop: Sequence[str] = (),
    default_max_tokens: int = 64,
) -> Generation:
    """Deterministic output for ``prompt``: its natural length is 8 to 64 words.

    Stops early (``finish_reason="length"``) at ``max_tokens``; a stop sequence truncates the text
    before it (``finish_reason="stop"``).
    """
    rng = _rng(prompt, choice)
    natural = rng.randint(8, 64)
    limit = max_tokens if max_tokens is not None else default_max_tokens
    count = min(natural, limit)
    tokens = [(" " if i else "") + rng.choice(_WORDS) for i in range(count)]
    finish = "length" if natural > limit else "stop"
    if stop:
        text = ""
        for i, token in enumerate(tokens):
            text += token
            if any(s and s in text for s in stop):
                return Generation(tokens[:i], "stop")
    return Generation(tokens, finish)


def _value_for(schema: Any, rng: random.Random) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(schema, dict) and schema.get("enum"):
        return schema["enum"][0]
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value_for(schema.get("items", {}), rng)]
    if kind == "object":
        return arguments_for(schema, rng)
    return rng.choice(_WORDS)


def arguments_for(schema: Any, rng: random.Random) -> dict[str, Any]:
    """An arguments object that fits a function's JSON Schema (required properties first)."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return {name: _value_for(sub, rng) for name, sub in props.items()}


@dataclass(frozen=True, slots=True)
class ToolCallPlan:
    """A tool call the simulated model makes."""

    id: str
    name: str
    arguments: str


def plan_tool_call(
    prompt: str, tools: Sequence[Any], tool_choice: Any, last_role: str
) -> ToolCallPlan | None:
    """Whether (and which) tool the model calls.

    ``required`` or a named function always calls; ``auto`` calls when the last message is the
    user's (after a tool result it answers in text, so tool round trips terminate); ``none`` never.
    """
    if not tools or tool_choice == "none":
        return None
    chosen = None
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        chosen = next((t for t in tools if t.function.name == wanted), None)
    elif tool_choice == "required" or (tool_choice in (None, "auto") and last_role == "user"):
        chosen = tools[_rng(prompt, "tool").randrange(len(tools))]
    if chosen is None:
        return None
    rng = _rng(prompt, chosen.function.name)
    args = arguments_for(chosen.function.parameters or {}, rng)
    call_id = "call_" + hashlib.sha256(f"{prompt}{chosen.function.name}".encode()).hexdigest()[:24]
    return ToolCallPlan(call_id, chosen.function.name, json.dumps(args))


def embed(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-length vector for ``text``."""
    rng = _rng("embed", text)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def embedding_base64(vector: Sequence[float]) -> str:
    """OpenAI's ``encoding_format=base64``: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """Each input of an embeddings request as ``(text, tokens)``; token arrays count exactly."""
    if isinstance(value, str):
        return [(value, count_text_tokens(value))]
    if value and all(isinstance(v, int) for v in value):
        return [(" ".join(map(str, value)), len(value))]
    out = []
    for item in value:
        if isinstance(item, str):
            out.append((item, count_text_tokens(item)))
        else:
            out.append((" ".join(map(str, item)), len(item)))
    return out
