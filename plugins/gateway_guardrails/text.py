"""Where the text is in OpenAI chat bodies, and the options the built-in guardrails share.

Request text is each message's string ``content`` and the ``text`` of its ``text`` parts, every
role included; answer text is each choice's ``message.content``; stream text is each choice's
``delta.content``. Rewrites build new dicts and leave what they were given untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

WHERE = ("request", "response", "both")


def where_option(where: object) -> tuple[bool, bool]:
    """``(on requests, on responses)`` for a ``where`` option.

    Raises:
        ValueError: ``where`` is not ``request``, ``response`` or ``both``.
    """
    if where not in WHERE:
        raise ValueError(f"`where` must be one of {', '.join(WHERE)}, got {where!r}")
    return where != "response", where != "request"


def message_texts(body: Mapping[str, Any]) -> Iterator[str]:
    """The text of every message of a chat request."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(text := part.get("text"), str):
                    yield text


def rewrite_message_texts(
    body: Mapping[str, Any], rewrite: Callable[[str], str]
) -> dict[str, Any] | None:
    """``body`` with every message text passed through ``rewrite``; None when none changed."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    changed = False
    out: list[Any] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        new: Any = content
        if isinstance(content, str):
            new = rewrite(content)
        elif isinstance(content, list):
            new = [_rewrite_part(part, rewrite) for part in content]
        if new != content:
            changed = True
            message = {**message, "content": new}
        out.append(message)
    return {**body, "messages": out} if changed else None


def _rewrite_part(part: Any, rewrite: Callable[[str], str]) -> Any:
    if isinstance(part, dict) and isinstance(text := part.get("text"), str):
        new = rewrite(text)
        if new != text:
            return {**part, "text": new}
    return part


def answer_texts(body: Mapping[str, Any]) -> Iterator[str]:
    """The ``message.content`` of every choice of a ``chat.completion``."""
    for choice in _choices(body):
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(content := message.get("content"), str):
            yield content


def rewrite_answer_texts(
    body: Mapping[str, Any], rewrite: Callable[[str], str]
) -> dict[str, Any] | None:
    """``body`` with every choice's ``message.content`` passed through ``rewrite``; None when
    none changed."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return None
    changed = False
    out: list[Any] = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(content := message.get("content"), str):
            new = rewrite(content)
            if new != content:
                changed = True
                choice = {**choice, "message": {**message, "content": new}}
        out.append(choice)
    return {**body, "choices": out} if changed else None


def delta_text(choice: Mapping[str, Any]) -> str | None:
    """A stream choice's ``delta.content`` (None when it carries none)."""
    delta = choice.get("delta")
    if isinstance(delta, dict) and isinstance(content := delta.get("content"), str):
        return content
    return None


def with_delta_text(choice: Mapping[str, Any], text: str) -> dict[str, Any]:
    """``choice`` with ``delta.content`` set to ``text``."""
    delta = choice.get("delta")
    return {**choice, "delta": {**(delta if isinstance(delta, dict) else {}), "content": text}}


def _choices(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    choices = body.get("choices")
    if not isinstance(choices, list):
        return []
    return [c for c in choices if isinstance(c, dict)]


def stream_choices(chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The choices of a stream chunk that are objects (none for a usage-only chunk)."""
    return _choices(chunk)
