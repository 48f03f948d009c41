"""The guardrails of one model group, run in config order around a request.

The gateway holds a :class:`GuardrailChain` only for a model group that lists guardrails, so a
group without any pays nothing. Guardrails see OpenAI chat format only: the request body is a
``chat.completions`` request, the answer a ``chat.completion``, the stream
``chat.completion.chunk`` events; the gateway translates other dialects around the chain.

In every check the first block wins (later guardrails do not run) and a rewrite's replacement is
what the next guardrail sees. Untouched answers and events are passed on as the very bytes that
came in: nothing is re-encoded unless a guardrail rewrote it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import msgspec

from gateway.closing import close_chunks
from gateway.codec import decode, encode
from gateway.errors import GuardrailBlockedError, UpstreamConnectionError
from gateway.guardrails.base import Guardrail, GuardrailAction, GuardrailContext, GuardrailVerdict
from gateway.sse import SSEFramer, encode_event, parse_event

_DONE = b"[DONE]"


def _outcome(name: str, verdict: GuardrailVerdict) -> Mapping[str, Any] | None:
    """The replacement a verdict asks for (None to keep what was checked).

    Raises:
        GuardrailBlockedError: the verdict is a block.
    """
    if verdict.action is GuardrailAction.BLOCK:
        raise GuardrailBlockedError(name, verdict.message or "blocked")
    if verdict.action is GuardrailAction.REWRITE:
        return verdict.replacement
    return None


class GuardrailChain:
    """Runs named guardrails in order on a request, its answer or its stream.

    Args:
        guardrails: ``(config name, guardrail)`` pairs in the order of the config; the name is
            what a block's error message names.
    """

    __slots__ = ("_guardrails",)

    def __init__(self, guardrails: Sequence[tuple[str, Guardrail]]) -> None:
        self._guardrails = tuple(guardrails)

    async def check_request(self, context: GuardrailContext) -> Mapping[str, Any] | None:
        """Check ``context.body`` with every guardrail.

        Returns:
            The rewritten body to serve instead, or None when no guardrail changed it.

        Raises:
            GuardrailBlockedError: a guardrail blocked the request.
        """
        rewritten: Mapping[str, Any] | None = None
        current = context
        for name, guardrail in self._guardrails:
            replacement = _outcome(name, await guardrail.check_request(current))
            if replacement is not None:
                rewritten = replacement
                # The same state dict travels on: replace() copies the reference.
                current = dataclasses.replace(context, body=replacement)
        return rewritten

    async def check_response(self, context: GuardrailContext, body: bytes) -> bytes:
        """Check a whole ``chat.completion`` answer with every guardrail.

        Returns:
            ``body`` itself when no guardrail changed it, else the rewritten answer encoded.

        Raises:
            GuardrailBlockedError: a guardrail blocked the answer.
            UpstreamConnectionError: ``body`` is not a JSON object, so it cannot be checked.
        """
        answer = _decode_object(body)
        if answer is None:
            raise UpstreamConnectionError("The upstream's answer is not a JSON object.")
        changed = False
        for name, guardrail in self._guardrails:
            replacement = _outcome(name, await guardrail.check_response(context, answer))
            if replacement is not None:
                answer, changed = replacement, True
        return encode(answer) if changed else body

    async def filter_stream(
        self, context: GuardrailContext, chunks: AsyncIterator[bytes]
    ) -> AsyncGenerator[bytes, None]:
        """Check each ``data:`` chunk of a chat stream as it goes by.

        ``chunks`` are raw SSE bytes as an upstream sends them: an event may be split across
        them or several share one. What comes out is whole events, one yield per input chunk
        that completed any: chunk events checked (re-encoded only when rewritten), and
        everything else (``[DONE]``, comments, data that is not a JSON object) as it came, in
        order. ``chunks`` is closed when this generator ends, early or not, if it is an async
        generator (an upstream stream's own ``aclose`` stays with its owner).

        Raises:
            GuardrailBlockedError: from the iteration, when a guardrail blocked a chunk.
        """
        framer = SSEFramer()
        try:
            async for data in chunks:
                if events := framer.feed(data):
                    yield await self._filter_events(context, events)
            if (rest := framer.flush()).strip():
                yield await self._filter_events(context, [rest + b"\n\n"])
        finally:
            await close_chunks(chunks)

    async def _filter_events(self, context: GuardrailContext, events: list[bytes]) -> bytes:
        out: list[bytes] = []
        for block in events:
            event = parse_event(block)
            chunk = None if event is None or event.data == _DONE else _decode_object(event.data)
            if event is None or chunk is None:
                out.append(block)
                continue
            changed = False
            for name, guardrail in self._guardrails:
                replacement = _outcome(name, await guardrail.check_chunk(context, chunk))
                if replacement is not None:
                    chunk, changed = replacement, True
            out.append(encode_event(encode(chunk), event.name) if changed else block)
        return b"".join(out)


def _decode_object(data: bytes) -> Mapping[str, Any] | None:
    """``data`` decoded when it is a JSON object; None otherwise."""
    try:
        value = decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
