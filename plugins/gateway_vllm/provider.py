"""Relay OpenAI-format requests to an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp's
server or another gateway) as bytes, through :class:`gateway.providers.http.HttpRelay`.

Capabilities: ``health`` (``GET /health``) and ``engine_metrics`` (vLLM's ``/metrics``).
"""

from __future__ import annotations

import time

import aiohttp

from gateway.providers.base import (
    OPENAI_ENDPOINTS,
    BackendSpec,
    Endpoint,
    ProviderContext,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway.providers.http import HttpRelay, RelayedStream, bearer_headers
from gateway.routing.base import EngineMetrics
from gateway_vllm.metrics import parse_engine_metrics

KNOWN_OPTIONS = ("headers", "messages", "responses")


class OpenAICompatibleProvider:
    """A :class:`gateway.providers.Provider` for one OpenAI-compatible backend.

    Options: ``headers`` (sent with every request); ``messages: true`` when the server also
    serves Anthropic's ``/v1/messages`` (newer vLLM versions do), and ``responses: true`` when
    it serves OpenAI's ``/v1/responses`` (vLLM does): requests in that format are then relayed
    as they are instead of being translated to Chat Completions.
    """

    def __init__(self, spec: BackendSpec, context: ProviderContext) -> None:
        if not spec.url:
            raise ValueError("`url` is required for an OpenAI-compatible backend")
        unknown = set(spec.options) - set(KNOWN_OPTIONS)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; known: {list(KNOWN_OPTIONS)}")
        native = {
            endpoint
            for endpoint, option in (
                (Endpoint.MESSAGES, "messages"),
                (Endpoint.RESPONSES, "responses"),
            )
            if spec.options.get(option)
        }
        self.endpoints = OPENAI_ENDPOINTS | native
        self._context = context
        self._relay = HttpRelay(
            context, spec.timeouts, bearer_headers(spec.api_key, spec.options.get("headers"))
        )
        self._urls = {e: f"{spec.url}/v1/{e.value}" for e in Endpoint}
        self._health_url = f"{spec.url}/health"
        self._metrics_url = f"{spec.url}/metrics"

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        return await self._relay.send(self._urls[request.endpoint], request)

    async def open_stream(self, request: UpstreamRequest) -> RelayedStream:
        return await self._relay.open_stream(self._urls[request.endpoint], request)

    async def health(self) -> bool:
        """``GET /health``: healthy when it answers below 500 (the caller bounds the time).

        vLLM answers 200, or 503 once its engine is dead. A server with no health route answers
        404, which still proves it is up: taking it out of routing would black-hole traffic.
        """
        try:
            async with self._context.http.get(self._health_url) as response:
                return response.status < 500
        except (aiohttp.ClientError, OSError):
            return False

    async def engine_metrics(self) -> EngineMetrics | None:
        """Waiting, running and KV-cache use from ``GET /metrics`` (None when unreadable, or
        when the server is not vLLM; the caller bounds the time)."""
        try:
            async with self._context.http.get(self._metrics_url) as response:
                if response.status != 200:
                    return None
                text = await response.text()
        except (aiohttp.ClientError, OSError):
            return None
        return parse_engine_metrics(text, time.monotonic())
