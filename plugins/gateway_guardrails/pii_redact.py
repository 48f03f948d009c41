"""``pii_redact``: replace e-mail addresses, phone and card numbers (and configured patterns)
in requests, so they never reach a model, and in answers, whole or streamed."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.guardrails.base import GuardrailContext, GuardrailVerdict
from gateway_guardrails.redaction import BUILTIN, Detector, Redactor, StreamRedactor
from gateway_guardrails.text import (
    delta_text,
    rewrite_answer_texts,
    rewrite_message_texts,
    where_option,
    with_delta_text,
)


def _kinds(kinds: object) -> tuple[str, ...]:
    if not isinstance(kinds, list | tuple) or not all(k in BUILTIN for k in kinds):
        raise ValueError(f"`kinds` must be a list of {', '.join(BUILTIN)}, got {kinds!r}")
    return tuple(kinds)


def _custom(patterns: object, window: int) -> list[Detector]:
    if not isinstance(patterns, Mapping):
        raise ValueError(f"`patterns` must map labels to regular expressions, got {patterns!r}")
    detectors = []
    for label, pattern in patterns.items():
        if not isinstance(label, str) or not label or not isinstance(pattern, str):
            raise ValueError(f"`patterns` must map labels to regular expressions: {label!r}")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"`patterns.{label}`: {pattern!r} is not a valid regex: {exc}"
            ) from None
        if compiled.fullmatch(""):
            raise ValueError(f"`patterns.{label}`: {pattern!r} matches the empty string")
        detectors.append(Detector(label, compiled, reach=window))
    return detectors


class PiiRedactGuardrail:
    """Rewrites message text, answer content and streamed content with PII replaced.

    Cards count only with a valid Luhn checksum (13 to 19 digits, first digit 2 to 6, single
    spaces or dashes between digits); phones are ``+`` international numbers of 8 to 15 digits
    or US numbers written with separators; e-mail addresses are the usual form. A stream holds
    back the tail that could still grow into a match (see ``redaction``) and flushes it in the
    chunk that carries the choice's ``finish_reason``.

    Options:
        kinds: which of ``email``, ``phone``, ``card`` to find (default all).
        patterns: extra ``{label: regex}`` to find.
        replacement: a format string with ``{label}`` (default ``[REDACTED:{label}]``).
        where: ``request``, ``response`` or ``both`` (the default).
        stream_window: the longest match a custom pattern is assumed to make, which is how
            much a stream holds back when custom patterns are configured (default 64).
    """

    def __init__(
        self,
        kinds: Sequence[str] = tuple(BUILTIN),
        patterns: Mapping[str, str] | None = None,
        replacement: str = "[REDACTED:{label}]",
        where: str = "both",
        stream_window: int = 64,
    ) -> None:
        if (
            isinstance(stream_window, bool)
            or not isinstance(stream_window, int)
            or stream_window < 1
        ):
            raise ValueError(f"`stream_window` must be an integer of at least 1: {stream_window!r}")
        detectors = [d for kind in _kinds(kinds) for d in BUILTIN[kind]]
        detectors += _custom(patterns or {}, stream_window)
        if not detectors:
            raise ValueError("`kinds` and `patterns` leave nothing to redact")
        if not isinstance(replacement, str):
            raise ValueError(f"`replacement` must be a string, got {replacement!r}")
        try:
            self.redactor = Redactor(detectors, replacement)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            raise ValueError(
                f"`replacement` must be a format string with only {{label}}: {replacement!r}"
            ) from None
        self.on_request, self.on_response = where_option(where)
        self._key = f"pii_redact#{id(self)}"

    async def check_request(self, context: GuardrailContext) -> GuardrailVerdict:
        if self.on_request:
            body = rewrite_message_texts(context.body, self.redactor.redact)
            if body is not None:
                return GuardrailVerdict.rewrite(body)
        return GuardrailVerdict.allow()

    async def check_response(
        self, context: GuardrailContext, body: Mapping[str, Any]
    ) -> GuardrailVerdict:
        if self.on_response:
            rewritten = rewrite_answer_texts(body, self.redactor.redact)
            if rewritten is not None:
                return GuardrailVerdict.rewrite(rewritten)
        return GuardrailVerdict.allow()

    async def check_chunk(
        self, context: GuardrailContext, chunk: Mapping[str, Any]
    ) -> GuardrailVerdict:
        choices = chunk.get("choices")
        if not self.on_response or not isinstance(choices, list) or not choices:
            return GuardrailVerdict.allow()
        streams: dict[Any, StreamRedactor] = context.state.setdefault(self._key, {})
        changed = False
        out: list[Any] = []
        for choice in choices:
            if not isinstance(choice, dict):
                out.append(choice)
                continue
            text = delta_text(choice)
            finished = choice.get("finish_reason") is not None
            index = choice.get("index", 0)
            if text is None and not (finished and index in streams):
                out.append(choice)
                continue
            stream = streams.get(index)
            if stream is None:
                stream = streams[index] = StreamRedactor(self.redactor)
            emitted = stream.feed(text or "")
            if finished:
                emitted += stream.finish()
                del streams[index]
            if emitted != text and (emitted or text is not None):
                changed = True
                choice = with_delta_text(choice, emitted)
            out.append(choice)
        return (
            GuardrailVerdict.rewrite({**chunk, "choices": out})
            if changed
            else GuardrailVerdict.allow()
        )
