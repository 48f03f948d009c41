"""The gateway's one token estimator, for when no tokenizer is at hand.

About four characters of text per token (close to real tokenizers on English), token arrays
counted exactly, and a few tokens of chat-template framing per message. Used wherever a count
must be had before the upstream answers: ``count_tokens`` for backends that cannot count,
embedding batch sizes, cost-aware routing, and (next) rate limits and admission.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def estimate_text_tokens(text: str) -> int:
    """Tokens of a piece of text (at least 1)."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def estimate_tokens(value: Any) -> int:
    """Tokens of a prompt-like value: text, a token array, or any JSON value made of them.

    Text inside nested lists and objects (content parts, tool definitions) is counted; numbers
    in a flat list are token ids, one each; other scalars count nothing. Walked with a stack,
    not recursion: a client's body may nest as deeply as the JSON decoder allows.
    """
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += estimate_text_tokens(item)
        elif isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, Sequence) and not isinstance(item, bytes | bytearray):
            if item and all(isinstance(v, int) and not isinstance(v, bool) for v in item):
                total += len(item)
            else:
                pending.extend(item)
    return total


def estimate_prompt_tokens(request: Mapping[str, Any]) -> int:
    """Input tokens of a chat, completions, embeddings or Messages request body.

    Counts ``system``, every message's content (plus template framing), ``tools``, ``prompt``
    and ``input``.
    """
    messages = request.get("messages") or []
    total = TOKENS_PER_MESSAGE * len(messages)
    for message in messages:
        if isinstance(message, Mapping):
            total += estimate_tokens(message.get("content"))
    for name in ("system", "tools", "prompt", "input"):
        if request.get(name):
            total += estimate_tokens(request[name])
    return total
