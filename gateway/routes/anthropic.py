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
from litestar.types import ASGIApp

from gateway.errors import GatewayError, anthropic_error_json
from gateway.providers.base import Endpoint, UpstreamRequest, endpoints_of
from gateway.routes.calls import Call
from gateway.routes.front import HotRoute, anthropic_error_response
from gateway.routes.openai import decode_payload
from gateway.routes.relay import Exchange, Relay, StreamConverter, with_model
from gateway.routes.responses import RawResponse
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


def build_anthropic_routes(state: GatewayState) -> dict[str, HotRoute]:
    """The Messages routes bound to ``state``, by path."""
    catalog = state.catalog
    auth = state.auth
    relay = Relay(state)
    max_body = state.settings.server.max_body_bytes

    async def messages(call: Call) -> ASGIApp:
        started = time.perf_counter()
        request_id = call.request_id
        headers = call.headers
        try:
            auth.check(headers.get("authorization"), headers.get("x-api-key"))
            body = await call.body(max_body)
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

        route = RouteRequest(client_model, ENDPOINT, payload, headers)
        exchange = Exchange(ENDPOINT, group, route, request_for, stream, started, request_id)
        return await relay.run(exchange, convert_for, anthropic_error_event)

    async def count_tokens(call: Call) -> ASGIApp:
        headers = call.headers
        auth.check(headers.get("authorization"), headers.get("x-api-key"))
        body = await call.body(max_body)
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
        return RawResponse(
            _json.encode({"input_tokens": tokens}),
            200,
            {
                "x-request-id": call.request_id,
                "x-gateway-token-count": "exact" if counted is not None else "estimate",
            },
        )

    return {
        "/v1/messages": HotRoute(messages, anthropic_error_response),
        "/v1/messages/count_tokens": HotRoute(count_tokens, anthropic_error_response),
    }
