"""``max_input_chars``: refuse requests whose messages hold too much text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.guardrails.base import GuardrailContext, GuardrailVerdict
from gateway_guardrails.text import message_texts


class MaxInputCharsGuardrail:
    """Blocks a request whose message text (string contents and text parts, all roles) is
    longer than ``max_chars`` characters in total; answers and streams pass.

    Options:
        max_chars: the most characters allowed (an int, at least 1).
    """

    def __init__(self, max_chars: int) -> None:
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ValueError(f"`max_chars` must be an integer of at least 1, got {max_chars!r}")
        self.max_chars = max_chars

    async def check_request(self, context: GuardrailContext) -> GuardrailVerdict:
        total = sum(len(text) for text in message_texts(context.body))
        if total > self.max_chars:
            return GuardrailVerdict.block(
                f"the messages hold {total} characters, over the limit of {self.max_chars}"
            )
        return GuardrailVerdict.allow()

    async def check_response(
        self, context: GuardrailContext, body: Mapping[str, Any]
    ) -> GuardrailVerdict:
        return GuardrailVerdict.allow()

    async def check_chunk(
        self, context: GuardrailContext, chunk: Mapping[str, Any]
    ) -> GuardrailVerdict:
        return GuardrailVerdict.allow()
