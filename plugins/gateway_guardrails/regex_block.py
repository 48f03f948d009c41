"""``regex_block``: refuse requests or answers whose text matches a configured pattern."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.guardrails.base import GuardrailContext, GuardrailVerdict
from gateway_guardrails.text import (
    answer_texts,
    delta_text,
    message_texts,
    stream_choices,
    where_option,
)


def compile_patterns(name: str, patterns: object) -> tuple[re.Pattern[str], ...]:
    """Each of ``patterns`` compiled.

    Raises:
        ValueError: ``patterns`` is not a non-empty list of strings, or one is not a valid
            regular expression (the message names option ``name`` and the pattern).
    """
    if not isinstance(patterns, list | tuple) or not patterns:
        raise ValueError(f"`{name}` must be a non-empty list of regular expressions")
    compiled = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ValueError(f"`{name}` must hold strings, got {pattern!r}")
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"`{name}`: {pattern!r} is not a valid regex: {exc}") from None
    return tuple(compiled)


class RegexBlockGuardrail:
    """Blocks requests whose message text, or answers whose text, matches any of ``patterns``.

    On a stream, each choice's text so far is kept (in ``context.state``) and searched after
    every chunk, so a match split over chunks is caught on the chunk that completes it.

    Options:
        patterns: regular expressions (Python ``re`` syntax), searched anywhere in the text.
        where: ``request``, ``response`` or ``both`` (the default).
        message: what the client is told instead of the default.
    """

    def __init__(
        self, patterns: Sequence[str], where: str = "both", message: str | None = None
    ) -> None:
        self.patterns = compile_patterns("patterns", patterns)
        self.on_request, self.on_response = where_option(where)
        if message is not None and not isinstance(message, str):
            raise ValueError(f"`message` must be a string, got {message!r}")
        self.message = message
        self._key = f"regex_block#{id(self)}"

    def _verdict(self, texts: Iterable[str], what: str) -> GuardrailVerdict:
        for text in texts:
            for pattern in self.patterns:
                if pattern.search(text):
                    return GuardrailVerdict.block(
                        self.message or f"the {what} matches a blocked pattern"
                    )
        return GuardrailVerdict.allow()

    async def check_request(self, context: GuardrailContext) -> GuardrailVerdict:
        if not self.on_request:
            return GuardrailVerdict.allow()
        return self._verdict(message_texts(context.body), "request")

    async def check_response(
        self, context: GuardrailContext, body: Mapping[str, Any]
    ) -> GuardrailVerdict:
        if not self.on_response:
            return GuardrailVerdict.allow()
        return self._verdict(answer_texts(body), "response")

    async def check_chunk(
        self, context: GuardrailContext, chunk: Mapping[str, Any]
    ) -> GuardrailVerdict:
        if not self.on_response:
            return GuardrailVerdict.allow()
        grown: list[str] = []
        for choice in stream_choices(chunk):
            if text := delta_text(choice):
                seen: dict[int, str] = context.state.setdefault(self._key, {})
                index = choice.get("index", 0)
                seen[index] = so_far = seen.get(index, "") + text
                grown.append(so_far)
        return self._verdict(grown, "response")
