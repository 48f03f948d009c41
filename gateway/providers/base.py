"""The Provider contract: how the gateway talks to one upstream deployment.

A provider type is registered through the ``register_providers`` hook as a factory
``(spec: BackendSpec, context: ProviderContext) -> Provider``. The factory runs when the app is
built (so ``gateway check`` validates provider options without touching the network); network
resources are taken from ``context`` at call time, once the app has started.

Requests and responses speak OpenAI's wire format: a provider for another API translates both ways.

Beyond ``send`` and ``open_stream``, a provider may offer *capabilities*: small runtime-checkable
Protocols (:data:`CAPABILITIES`) that the gateway tests with ``isinstance`` when it builds its
background work, never by probing attribute names. ``docs/plugins.md`` documents each one.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import aiohttp

from gateway.routing.base import EngineMetrics
from gateway.settings import TimeoutSettings


class Endpoint(enum.StrEnum):
    """OpenAI endpoints a provider may serve, as paths relative to ``/v1/``."""

    CHAT = "chat/completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"  # Anthropic's Messages API
    RESPONSES = "responses"  # OpenAI's Responses API


OPENAI_ENDPOINTS = frozenset({Endpoint.CHAT, Endpoint.COMPLETIONS, Endpoint.EMBEDDINGS})


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Everything a provider factory needs to know about the backend it serves.

    Attributes:
        name: the backend's unique name (metrics label, ``x-gateway-backend`` header).
        group: the public model group name.
        url: base URL without ``/v1``.
        model: the model name the upstream expects.
        api_key: credential for the upstream, if any.
        weight: relative share for weighted routing.
        timeouts: the effective timeouts.
        options: provider-specific settings from the config, unvalidated.
        input_price / output_price: US dollars per million tokens.
        context_window: longest prompt plus output in tokens (0: unknown).
        local: runs on the operator's own machines, not a cloud API (the ``local_only`` gate).
        provider: the registered name of its provider type (``vllm``, ``openai``...).
    """

    name: str
    group: str
    url: str
    model: str
    api_key: str | None
    weight: float
    timeouts: TimeoutSettings
    options: Mapping[str, Any] = field(default_factory=dict)
    input_price: float = 0.0
    output_price: float = 0.0
    context_window: int = 0
    local: bool = False
    provider: str = ""


class ProviderContext:
    """Shared resources handed to every provider; usable once the app has started.

    The gateway owns one pooled :class:`aiohttp.ClientSession` for all upstream HTTP: keep-alive
    connections are reused across requests and backends.
    """

    def __init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """The shared HTTP client session.

        Raises:
            RuntimeError: before the app's start-up or after its shutdown.
        """
        if self._http is None:
            raise RuntimeError("the gateway has not started: no HTTP session yet")
        return self._http

    async def start(self) -> None:
        """Open the shared HTTP session (called by the app's lifespan)."""
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True
        )
        self._http = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        """Close the shared HTTP session and its connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None


@dataclass(slots=True)
class UpstreamRequest:
    """One call to an upstream, in OpenAI's format.

    Attributes:
        endpoint: which OpenAI endpoint.
        body: the JSON body to send, with the upstream's model name already in it.
        payload: the validated request (a ``gateway.schemas.openai`` Struct), for providers that
            translate instead of relaying bytes.
        stream: whether the client asked for a stream.
        request_id: the ``x-request-id`` to forward.
        headers: more headers to send with it (the trace context, ``traceparent``, when
            tracing is on); None: none.
    """

    endpoint: Endpoint
    body: bytes
    payload: Any
    stream: bool
    request_id: str
    headers: Mapping[str, str] | None = None


@dataclass(slots=True)
class UpstreamResponse:
    """A complete, successful upstream answer (OpenAI-format JSON body)."""

    status: int
    body: bytes


class UpstreamStream(Protocol):
    """An open upstream stream of OpenAI-format SSE bytes.

    Iterating yields raw bytes as they arrive (event boundaries need not align with chunks).
    ``aclose`` releases the upstream connection; closing early cancels the upstream request.
    Errors after the stream opened are raised from iteration as ``gateway.errors.UpstreamError``.
    """

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """One upstream deployment.

    Bodies and responses are in the endpoint's own format (OpenAI's for chat, completions and
    embeddings; Anthropic's for messages). A provider that is not :class:`ServesEndpoints` is
    taken to serve the OpenAI three.

    Both methods raise ``gateway.errors.UpstreamConnectionError`` (refused, reset),
    ``UpstreamTimeoutError`` (connect, first byte, idle, total) or ``UpstreamStatusError``
    (the upstream answered with an error status) and nothing else on failure.
    """

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send a non-streaming request and return the whole response."""
        ...

    async def open_stream(self, request: UpstreamRequest) -> UpstreamStream:
        """Send a streaming request; return once the upstream has answered with a success status."""
        ...


class ProviderFactory(Protocol):
    """What ``register_providers`` registers: builds a provider for one backend.

    Raises:
        ValueError: the backend's settings or options are unusable; the message says why and the
            gateway names the config field.
    """

    def __call__(self, spec: BackendSpec, context: ProviderContext) -> Provider: ...


@runtime_checkable
class ServesEndpoints(Protocol):
    """Capability: declares the endpoints the provider serves natively.

    A request for another endpoint reaches it translated (``/v1/messages`` as chat) or not at all.

    Attributes:
        endpoints: the endpoints served natively; fixed once the provider is built.
    """

    endpoints: frozenset[Endpoint]


@runtime_checkable
class HealthChecked(Protocol):
    """Capability: the provider can be probed; the gateway then runs active health checks."""

    async def health(self) -> bool:
        """Whether the upstream can serve now. The caller bounds the time; an exception or a
        timeout counts as unhealthy."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """Capability: exact input-token counts for ``/v1/messages/count_tokens``."""

    async def count_tokens(self, body: Mapping[str, Any]) -> int:
        """The input tokens of a Messages request ``body`` (its ``model`` is the upstream's).

        Raises:
            gateway.errors.GatewayError: the upstream failed; without this capability (or on a
                failure the caller chooses to absorb) the gateway estimates instead.
        """
        ...


@runtime_checkable
class EngineMetricsSource(Protocol):
    """Capability: reports the upstream engine's load, for strategies that route on it
    (:class:`gateway.routing.base.UsesEngineMetrics`)."""

    async def engine_metrics(self) -> EngineMetrics | None:
        """The engine's current load, or None when it could not be read (the old reading then
        goes stale). Called at most every 500 ms per backend, within a time bound set by the
        caller; it should not raise."""
        ...


CAPABILITIES: tuple[type, ...] = (ServesEndpoints, HealthChecked, TokenCounter, EngineMetricsSource)


def endpoints_of(provider: object) -> frozenset[Endpoint]:
    """The endpoints ``provider`` serves natively: its own if it :class:`ServesEndpoints`, else
    the OpenAI three."""
    if isinstance(provider, ServesEndpoints):
        return provider.endpoints
    return OPENAI_ENDPOINTS


def token_counter_of(provider: object) -> TokenCounter | None:
    """``provider`` as a :class:`TokenCounter`, or None when it cannot count tokens."""
    return provider if isinstance(provider, TokenCounter) else None
