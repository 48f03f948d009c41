"""Deterministic text, tool calls and embeddings derived from the request.

Same request, same answer. Generated text is made of words; each word is one output token.
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

from gateway_sim.tokens import count_tokens, split_tokens

_WORDS = """
the gateway routes every request to a replica with warm cache and low queue so
tokens flow fast while batches fill each step of the engine keeps prefill short and
decode steady under load model serving needs fair scheduling honest metrics and
quick recovery when one backend fails or slows down
""".split()  # noqa: SIM905 - prose reads better than a 50-item list


_SPACED = [" " + w for w in _WORDS]


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
    ignore_eos: bool = False,
    default_max_tokens: int = 64,
) -> Generation:
    """Deterministic output for ``prompt``: its natural length is 8 to 64 words.

    Stops early (``finish_reason="length"``) at ``max_tokens``; with ``ignore_eos`` (vLLM's
    extension for benchmarks) it always generates ``max_tokens``. A stop sequence truncates the
    text before it (``finish_reason="stop"``).
    """
    rng = _rng(prompt, choice)
    limit = max_tokens if max_tokens is not None else default_max_tokens
    natural = limit if ignore_eos else rng.randint(8, 64)
    count = min(natural, limit)
    # Interned words: a long output costs one reference per token.
    tokens = [_SPACED[rng.randrange(len(_SPACED))] for _ in range(count)]
    if tokens:
        tokens[0] = tokens[0][1:]
    finish = "length" if natural > limit else "stop"
    stops = [s for s in stop if s]
    if stops:
        # Search only the tail a new token can complete, so long outputs stay linear.
        window = max(len(s) for s in stops) + max(len(w) for w in _SPACED)
        text = ""
        for i, token in enumerate(tokens):
            text = (text + token)[-window:]
            if any(s in text for s in stops):
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
    """A tool call the simulated model makes; its arguments stream as pseudo-tokens."""

    id: str
    name: str
    arguments: str

    @property
    def tokens(self) -> list[str]:
        return split_tokens(self.arguments)


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """A tool choice in either API, normalised.

    Attributes:
        mode: ``auto`` (call when the last message is the user's), ``required`` (always call),
            ``none`` (never call).
        name: a specific tool to call (implies ``required``).
    """

    mode: str = "auto"
    name: str | None = None


def plan_tool_call(
    prompt: str, tools: Sequence[tuple[str, Any]], choice: ToolChoice, last_is_user: bool
) -> ToolCallPlan | None:
    """Whether (and which) tool the model calls, given ``(name, JSON Schema)`` pairs.

    ``auto`` calls only when the last message is the user's, so that after a tool result the
    model answers in text and tool round trips terminate.
    """
    if not tools or choice.mode == "none":
        return None
    chosen = None
    if choice.name is not None:
        chosen = next((t for t in tools if t[0] == choice.name), None)
    elif choice.mode == "required" or (choice.mode == "auto" and last_is_user):
        chosen = tools[_rng(prompt, "tool").randrange(len(tools))]
    if chosen is None:
        return None
    name, schema = chosen
    args = arguments_for(schema or {}, _rng(prompt, name))
    call_id = hashlib.sha256(f"{prompt}{name}".encode()).hexdigest()[:24]
    return ToolCallPlan(call_id, name, json.dumps(args))


def embed(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-length vector for ``text`` (components drawn from its hash)."""
    digest = hashlib.shake_256(f"embed\x1f{text}".encode()).digest(4 * dimensions)
    raw = [v / 2_147_483_648.0 - 1.0 for v in struct.unpack(f"<{dimensions}I", digest)]
    norm = math.sqrt(math.fsum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


def embedding_base64(vector: Sequence[float]) -> str:
    """OpenAI's ``encoding_format=base64``: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """Each input of an embeddings request as ``(text, tokens)``; token arrays count exactly."""
    if isinstance(value, str):
        return [(value, count_tokens(value))]
    if value and all(isinstance(v, int) for v in value):
        return [(" ".join(map(str, value)), len(value))]
    out = []
    for item in value:
        if isinstance(item, str):
            out.append((item, count_tokens(item)))
        else:
            out.append((" ".join(map(str, item)), len(item)))
    return out
