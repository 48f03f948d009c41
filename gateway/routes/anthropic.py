"""Anthropic-compatible ``POST /v1/messages`` and ``/v1/messages/count_tokens``, for any backend.

Backends that speak Messages natively (Anthropic, or a vLLM with ``messages: true``) get the
client's bytes as they are; the others get the request translated to Chat Completions and their
answers, plain or streamed, translated back. Errors on these routes use Anthropic's shape.
Clients may authenticate with ``x-api-key`` as well as ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp

from gateway.errors import GatewayError, anthropic_error_json
from gateway.providers.base import Endpoint, UpstreamRequest, endpoints_of
from gateway.routes.openai import decode_payload, request_id_of
from gateway.routes.relay import Exchange, Relay, StreamConverter, with_model
from gateway.routing.backends import Backend
from gateway.routing.base import RouteRequest
from gateway.schemas.anthropic import CountTokensRequest, MessagesRequest
from gateway.sse import encode_event
from gateway.state import GatewayState
from gateway.translate.messages import chat_response_to_messages, messages_request_to_chat
from gateway.translate.streams import ChatStreamToMessages, TranslatingStream

_json = msgspec.json.Encoder()
_any = msgspec.json.Decoder()
_messages = msgspec.json.Decoder(MessagesRequest)
_count = msgspec.json.Decoder(CountTokensRequest)
ENDPOINT = "messages"


def anthropic_error_event(error: GatewayError) -> bytes:
    """A mid-stream failure as Anthropic SDKs expect it: an ``error`` event."""
    return encode_event(anthropic_error_json(error), "error")


class ChatToMessages:
    """Converts an OpenAI-format backend's answers to Anthropic's format."""

    def __init__(self, model: str) -> None:
        self.model = model

    def body(self, data: bytes) -> bytes:
        return _json.encode(chat_response_to_messages(_any.decode(data), self.model))

    def stream(self) -> StreamConverter:
        return TranslatingStream(ChatStreamToMessages(self.model))


def estimate_tokens(request: dict[str, Any]) -> int:
    """About 4 characters per token over the text of system, messages and tools, plus a few
    tokens per message for the chat template: what ``count_tokens`` answers for backends that
    cannot count exactly."""
    text = json.dumps(request.get("system") or "") + json.dumps(request.get("tools") or [])
    for message in request.get("messages") or []:
        text += json.dumps(message.get("content"))
    return -(-len(text) // 4) + 4 * len(request.get("messages") or [])


def build_anthropic_routes(state: GatewayState) -> list[HTTPRouteHandler]:
    """The Messages routes bound to ``state``."""
    catalog = state.catalog
    auth = state.auth
    relay = Relay(state)

    @post("/v1/messages", status_code=200)
    async def messages(request: Request[Any, Any, Any]) -> ASGIApp:
        started = time.perf_counter()
        request_id = request_id_of(request)
        try:
            auth.check(request.headers.get("authorization"), request.headers.get("x-api-key"))
            body = await request.body()
            payload = decode_payload(body, _messages)
            group = catalog.resolve(payload.model)
            raw = _any.decode(body)
            native = all(Endpoint.MESSAGES in endpoints_of(b.provider) for b in group.backends)
            chat = None if native else messages_request_to_chat(raw)
        except GatewayError as exc:
            relay.rejected(ENDPOINT, exc, started)
            raise
        stream = bool(payload.stream)
        client_model = payload.model

        def request_for(backend: Backend) -> UpstreamRequest:
            if Endpoint.MESSAGES in endpoints_of(backend.provider) or chat is None:
                data = body if backend.model == client_model else with_model(body, backend.model)
                return UpstreamRequest(Endpoint.MESSAGES, data, raw, stream, request_id)
            translated = {**chat, "model": backend.model}
            return UpstreamRequest(
                Endpoint.CHAT, _json.encode(translated), translated, stream, request_id
            )

        def convert_for(backend: Backend) -> ChatToMessages | None:
            native = Endpoint.MESSAGES in endpoints_of(backend.provider)
            return None if native else ChatToMessages(client_model)

        route = RouteRequest(client_model, ENDPOINT, payload, request.headers)
        exchange = Exchange(
            request, ENDPOINT, group, route, request_for, stream, started, request_id
        )
        return await relay.run(exchange, convert_for, anthropic_error_event)

    @post("/v1/messages/count_tokens", status_code=200)
    async def count_tokens(request: Request[Any, Any, Any]) -> Response[Any]:
        request_id = request_id_of(request)
        auth.check(request.headers.get("authorization"), request.headers.get("x-api-key"))
        body = await request.body()
        payload = decode_payload(body, _count)
        group = catalog.resolve(payload.model)
        raw = _any.decode(body)
        counted = None
        for backend in group.candidates():
            counter = getattr(backend.provider, "count_tokens", None)
            if counter is not None:
                counted = await counter({**raw, "model": backend.model})
                break
        tokens = counted if counted is not None else estimate_tokens(raw)
        return Response(
            _json.encode({"input_tokens": tokens}),
            media_type="application/json",
            headers={
                "x-request-id": request_id,
                "x-gateway-token-count": "exact" if counted is not None else "estimate",
            },
        )

    return [messages, count_tokens]
