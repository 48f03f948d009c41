"""Guardrails in the pipeline: the request checked before the cache, the answer after it.

Guardrails read and rewrite the OpenAI chat format (``gateway.guardrails.base``). A chat request
is checked as it came; a Messages or Responses request for a guarded group is always translated
to chat (its dialect sees :attr:`RequestContext.guards` and skips the native relay), so that what
the guardrails passed is what the backend gets, and the backend's chat answer is checked before
it is translated back. Completions and embeddings requests are not checked. A group without
guardrails costs one dictionary lookup per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from gateway.guardrails.base import GuardrailContext
from gateway.pipeline.context import RequestContext

GUARDED_ENDPOINTS = frozenset({"chat/completions", "messages", "responses"})
# Served for a guarded group unchecked: nothing is generated (a token count).
COUNTED_ONLY = frozenset({"messages/count_tokens"})


def same_guardrails(chains: Mapping[str, Any], first: str, second: str) -> bool:
    """Whether groups ``first`` and ``second`` run the same guardrails (both none, or the same
    chain): a request may move between them (a cost policy's reroute, a fallback)."""
    return chains.get(first) is chains.get(second)


class Chain(Protocol):
    """The guardrails of one group, in order (:class:`gateway.guardrails.chain.GuardrailChain`)."""

    async def check_request(self, context: GuardrailContext) -> Mapping[str, Any] | None: ...

    async def check_response(self, context: GuardrailContext, body: bytes) -> bytes: ...

    def filter_stream(self, context: GuardrailContext, chunks: Any) -> Any: ...


class Guarding:
    """One request's guardrails: the group's chain, and the context its checks share."""

    __slots__ = ("chain", "context")

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.context: GuardrailContext | None = None


def chat_form(ctx: RequestContext) -> dict[str, Any]:
    """The request as the chat body its backends will get."""
    endpoint = ctx.dialect.endpoint
    if endpoint == "messages":
        chat: dict[str, Any] = ctx.turn
        return chat
    if endpoint == "responses":
        translated: dict[str, Any] = ctx.turn.chat
        return translated
    return ctx.raw


def _replace(ctx: RequestContext, body: Mapping[str, Any]) -> None:
    endpoint = ctx.dialect.endpoint
    if endpoint == "messages":
        ctx.turn = dict(body)
    elif endpoint == "responses":
        ctx.turn.chat = dict(body)
    else:
        ctx.replace_raw(dict(body))


async def check_request(ctx: RequestContext, guarding: Guarding) -> None:
    """Run the request's guardrails; a rewrite replaces what the backends get.

    Raises:
        GuardrailBlockedError: a guardrail blocked it (400 ``guardrail_blocked``).
    """
    context = GuardrailContext(
        principal=ctx.principal,
        model=ctx.model_group.name,
        endpoint=ctx.dialect.endpoint,
        request_id=ctx.request_id,
        body=chat_form(ctx),
    )
    guarding.context = context
    replacement = await guarding.chain.check_request(context)
    if replacement is not None:
        _replace(ctx, replacement)
