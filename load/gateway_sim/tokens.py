"""Tokenization model of the simulator: no tokenizer download, fully deterministic.

Text is cut into pseudo-tokens of :data:`CHARS_PER_TOKEN` characters (the common ~4 characters per
token estimate), so a prompt's token count is ``ceil(len(text) / 4)``. Chats are first rendered
with a fixed chat template, so a conversation's earlier turns are a textual prefix of its later
turns, and requests sharing a system prompt share leading tokens, exactly what a prefix cache sees.
Token ids are CRC-32 hashes of the pseudo-tokens folded into a 128k vocabulary.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

CHARS_PER_TOKEN = 4
VOCAB_SIZE = 128_000


def content_text(content: Any) -> str:
    """The text of an OpenAI or Anthropic message content (string or list of parts/blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif part.get("type") == "tool_result":
            parts.append(content_text(part.get("content")))
        elif part.get("type") == "tool_use":
            parts.append(f"<tool_call>{part.get('name')}({part.get('input')})</tool_call>")
    return "\n".join(parts)


def render_turn(role: str, text: str) -> str:
    """One message in the chat template."""
    return f"<|{role}|>\n{text}\n"


def chat_template(messages: Sequence[Any], system: str | None = None) -> str:
    """Render OpenAI-style messages (objects with role, content, tool_calls) as prompt text.

    The rendering ends with the assistant header, as a generation prompt does.
    """
    out = [render_turn("system", system)] if system else []
    for m in messages:
        text = content_text(m.content)
        for call in getattr(m, "tool_calls", None) or ():
            text += f"<tool_call>{call.function.name}({call.function.arguments})</tool_call>"
        out.append(render_turn(m.role, text))
    out.append("<|assistant|>\n")
    return "".join(out)


def split_tokens(text: str) -> list[str]:
    """The pseudo-tokens of ``text``."""
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]


def count_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``."""
    return -(-len(text) // CHARS_PER_TOKEN)


def token_id(token: str) -> int:
    """A stable id for a pseudo-token."""
    return zlib.crc32(token.encode()) % VOCAB_SIZE


def token_ids(text: str) -> list[int]:
    """Token ids of ``text`` (what ``/tokenize`` returns)."""
    return [token_id(t) for t in split_tokens(text)]
