"""Anthropic's Messages API: ``POST /v1/messages`` (for any backend) and ``/count_tokens``.

Backends that speak Messages natively (Anthropic, or a vLLM with ``messages: true``) get the
client's bytes as they are; the others get the request translated to Chat Completions and their
answers, plain or streamed, translated back. Errors on these routes use Anthropic's shape.
Clients may authenticate with ``x-api-key`` as well as ``Authorization: Bearer``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.types import ASGIApp

from gateway.codec import decode, decode_request, encode
from gateway.pipeline.context import Converter, KeepsNothing, RequestContext, StreamConverter
from gateway.pipeline.pipeline import Pipeline
from gateway.providers.base import Endpoint, UpstreamRequest, endpoints_of, token_counter_of
from gateway.routes.calls import Call
from gateway.routes.errors import ANTHROPIC_ERRORS
from gateway.routes.front import HotRoute
from gateway.routes.responses import RawResponse
from gateway.routing.backends import Backend
from gateway.schemas.anthropic import CountTokensRequest, MessagesRequest
from gateway.tokens import estimate_prompt_tokens
from gateway.translate.messages import chat_response_to_messages, messages_request_to_chat
from gateway.translate.streams import ChatStreamToMessages, TranslatingStream


def speaks_messages(backend: Backend) -> bool:
    """Whether ``backend`` serves Anthropic's Messages API natively."""
    return Endpoint.MESSAGES in endpoints_of(backend.provider)


class ChatToMessages:
    """Converts an OpenAI-format backend's answers to Anthropic's format."""

    def __init__(self, model: str) -> None:
        self.model = model

    def body(self, data: bytes) -> bytes:
        return encode(chat_response_to_messages(decode(data), self.model))

    def stream(self) -> StreamConverter:
        return TranslatingStream(ChatStreamToMessages(self.model))


class MessagesDialect(KeepsNothing):
    """Anthropic's Messages, relayed to native backends and translated for the others.

    Satisfies :class:`gateway.pipeline.context.Dialect`.
    """

    endpoint = "messages"
    errors = ANTHROPIC_ERRORS
    streams = True
    cacheable = False
    follows_live = False
    batchable = False

    def __init__(self, request_type: type[Any] = MessagesRequest) -> None:
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(request_type)

    def decode(self, body: bytes) -> Any:
        return decode_request(body, self._decoder)

    async def prepare(self, ctx: RequestContext) -> None:
        """Translate to chat up front when some backend of the group needs it, so a request
        the translation cannot express is refused before any upstream call."""
        if ctx.chat_only or not all(speaks_messages(b) for b in ctx.model_group.backends):
            ctx.turn = messages_request_to_chat(ctx.raw)

    def upstream_request(self, ctx: RequestContext, backend: Backend) -> UpstreamRequest:
        chat: dict[str, Any] | None = ctx.turn
        if chat is None or (speaks_messages(backend) and not ctx.chat_only):
            return UpstreamRequest(
                Endpoint.MESSAGES, ctx.body_for(backend.model), ctx.raw, ctx.stream, ctx.request_id
            )
        body = ctx.encoded(
            f"chat:{backend.model}", lambda: encode({**chat, "model": backend.model})
        )
        return UpstreamRequest(Endpoint.CHAT, body, chat, ctx.stream, ctx.request_id)

    def converter(self, ctx: RequestContext, backend: Backend) -> Converter | None:
        native = speaks_messages(backend) and not ctx.chat_only
        return None if native else ChatToMessages(ctx.model)


class CountTokensDialect(MessagesDialect):
    """``/v1/messages/count_tokens``: decoded, authenticated and resolved like Messages, but
    answered by the route itself (no upstream call, so nothing to translate)."""

    endpoint = "messages/count_tokens"
    streams = False

    def __init__(self) -> None:
        super().__init__(CountTokensRequest)

    async def prepare(self, ctx: RequestContext) -> None:
        return None


MESSAGES = MessagesDialect()
COUNT_TOKENS = CountTokensDialect()


def build_anthropic_routes(pipeline: Pipeline) -> dict[str, HotRoute]:
    """The Messages routes served by ``pipeline``, by path."""

    async def messages(call: Call) -> ASGIApp:
        return await pipeline.serve(call, MESSAGES)

    async def count_tokens(call: Call) -> ASGIApp:
        """Exact counts from the first backend that can count, else the gateway's estimate."""
        ctx = await pipeline.intake(call, COUNT_TOKENS)
        counted = None
        for backend in ctx.model_group.candidates():
            counter = token_counter_of(backend.provider)
            if counter is not None:
                counted = await counter.count_tokens({**ctx.raw, "model": backend.model})
                break
        tokens = counted if counted is not None else estimate_prompt_tokens(ctx.raw)
        return RawResponse(
            encode({"input_tokens": tokens}),
            200,
            {
                "x-request-id": call.request_id,
                "x-gateway-token-count": "exact" if counted is not None else "estimate",
            },
        )

    return {
        "/v1/messages": HotRoute(messages, ANTHROPIC_ERRORS.response),
        "/v1/messages/count_tokens": HotRoute(count_tokens, ANTHROPIC_ERRORS.response),
    }
