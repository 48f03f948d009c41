"""Anthropic models through the official ``anthropic`` SDK (async).

Chat Completions requests are translated to Messages and the answers (plain or streamed) back,
by :mod:`gateway.translate`; ``/v1/messages`` requests pass through untouched. The SDK's own
retries are off (the gateway owns retries); its HTTP transport is aiohttp by default
(``options.transport: httpx`` for the SDK's default).

Options: ``default_max_tokens`` (4096; Anthropic requires ``max_tokens``), ``transport``,
``headers`` (sent with every request).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from typing import Any

import anthropic
import msgspec

from gateway.errors import InvalidRequestError
from gateway.providers.base import (
    BackendSpec,
    Endpoint,
    ProviderContext,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway.providers.sdk import (
    HeldStream,
    check_sdk_options,
    map_sdk_error,
    open_raw,
    read_raw,
    request_headers,
    split_sdk_params,
)
from gateway.translate.messages import chat_request_to_messages, messages_response_to_chat
from gateway.translate.streams import MessagesStreamToChat, TranslatingStream

_json = msgspec.json.Encoder()
_any = msgspec.json.Decoder()
ERRORS: tuple[type[Exception], ...] = (anthropic.APIError,)
KNOWN_OPTIONS = {"default_max_tokens", "transport", "headers"}
DEFAULT_URL = "https://api.anthropic.com"
COUNT_TOKENS_PARAMS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


def _create_params() -> frozenset[str]:
    signature = inspect.signature(anthropic.AsyncAnthropic(api_key="x").messages.create)
    return frozenset(signature.parameters) - {
        "extra_headers",
        "extra_query",
        "extra_body",
        "timeout",
    }


class AnthropicProvider:
    """A :class:`gateway.providers.Provider` for Anthropic's API (or a compatible one)."""

    endpoints = frozenset({Endpoint.CHAT, Endpoint.MESSAGES})

    def __init__(self, spec: BackendSpec, context: ProviderContext) -> None:
        transport = check_sdk_options(spec, KNOWN_OPTIONS, "ANTHROPIC_API_KEY")
        self._spec = spec
        self._where = spec.url or DEFAULT_URL
        self._transport = transport
        self._default_max_tokens = int(spec.options.get("default_max_tokens", 4096))
        self._client: anthropic.AsyncAnthropic | None = None
        self._known = _create_params()

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The SDK client, made on first use (inside the event loop)."""
        if self._client is None:
            t = self._spec.timeouts
            http_client = anthropic.DefaultAioHttpClient() if self._transport == "aiohttp" else None
            self._client = anthropic.AsyncAnthropic(
                api_key=self._spec.api_key,
                base_url=self._spec.url or DEFAULT_URL,
                max_retries=0,
                timeout=anthropic.Timeout(t.total, connect=t.connect, read=t.idle),
                default_headers=dict(self._spec.options.get("headers", {})),
                http_client=http_client,
            )
        return self._client

    def _messages_body(self, request: UpstreamRequest) -> tuple[dict[str, Any], bool]:
        """The Messages body for ``request`` and whether it was translated from chat."""
        body = _any.decode(request.body)
        if request.endpoint == Endpoint.MESSAGES:
            return body, False
        if request.endpoint != Endpoint.CHAT:
            raise InvalidRequestError(
                f"`{request.endpoint.value}` is not available for Anthropic models",
                code="unsupported_endpoint",
            )
        return chat_request_to_messages(body, self._default_max_tokens), True

    def _call(self, body: dict[str, Any], request: UpstreamRequest) -> Any:
        params = split_sdk_params(body, self._known)
        return lambda: self.client.messages.with_streaming_response.create(
            **params, extra_headers=request_headers(request)
        )

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        body, translated = self._messages_body(request)
        body.pop("stream", None)

        def convert(data: bytes) -> bytes:
            return _json.encode(messages_response_to_chat(_any.decode(data), int(time.time())))

        data = await read_raw(
            self._call(body, request),
            self._spec.timeouts.first_byte,
            self._where,
            ERRORS,
            convert if translated else None,
        )
        return UpstreamResponse(200, data)

    async def open_stream(self, request: UpstreamRequest) -> HeldStream:
        body, translated = self._messages_body(request)
        body["stream"] = True
        include_usage = (
            bool((_any.decode(request.body).get("stream_options") or {}).get("include_usage"))
            if translated
            else False
        )
        context, response = await open_raw(
            self._call(body, request),
            self._spec.timeouts.first_byte,
            self._where,
            ERRORS,
        )
        rewriter = TranslatingStream(MessagesStreamToChat(include_usage)) if translated else None
        return HeldStream(context, response, self._where, rewriter, ERRORS)

    async def count_tokens(self, body: Mapping[str, Any]) -> int:
        """Exact input tokens from Anthropic's count_tokens endpoint (``TokenCounter``)."""
        params = {k: body[k] for k in COUNT_TOKENS_PARAMS if k in body}
        try:
            result = await self.client.messages.count_tokens(**params)
        except ERRORS as exc:
            raise map_sdk_error(exc, self._where) from None
        return int(result.input_tokens)
