"""OpenAI (and Azure OpenAI, and OpenAI-compatible clouds) through the official ``openai`` SDK.

Requests are already in OpenAI's format: the body the client sent is handed to the SDK (known
parameters by name, the rest through ``extra_body``) and the raw response bytes come back
unparsed, streams chunk by chunk. The SDK's retries are off (the gateway owns retries); its HTTP
transport is aiohttp by default (``options.transport: httpx`` for the SDK's default).

Options: ``transport``; ``organization``, ``project``; ``azure_api_version`` (makes it an Azure
OpenAI client whose ``url`` is the resource endpoint and whose ``model`` is the deployment);
``headers`` (sent with every request).
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec
import openai

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
    open_raw,
    read_raw,
    request_headers,
    split_sdk_params,
)

_any = msgspec.json.Decoder()
ERRORS: tuple[type[Exception], ...] = (openai.APIError,)
KNOWN_OPTIONS = {"transport", "organization", "project", "azure_api_version", "headers"}
DEFAULT_URL = "https://api.openai.com/v1"
_NOT_PARAMS = {"extra_headers", "extra_query", "extra_body", "timeout"}


class OpenAIProvider:
    """A :class:`gateway.providers.Provider` for OpenAI's API through its SDK."""

    endpoints = frozenset(
        {Endpoint.CHAT, Endpoint.COMPLETIONS, Endpoint.EMBEDDINGS, Endpoint.RESPONSES}
    )

    def __init__(self, spec: BackendSpec, context: ProviderContext) -> None:
        transport = check_sdk_options(spec, KNOWN_OPTIONS, "OPENAI_API_KEY")
        if spec.options.get("azure_api_version") and not spec.url:
            raise ValueError("`url` (the Azure resource endpoint) is required for Azure OpenAI")
        self._spec = spec
        self._where = spec.url or DEFAULT_URL
        self._transport = transport
        self._client: openai.AsyncOpenAI | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client, made on first use (inside the event loop)."""
        if self._client is None:
            spec, options = self._spec, self._spec.options
            t = spec.timeouts
            common: dict[str, Any] = {
                "api_key": spec.api_key,
                "max_retries": 0,
                "timeout": openai.Timeout(t.total, connect=t.connect, read=t.idle),
                "default_headers": dict(options.get("headers", {})),
                "http_client": openai.DefaultAioHttpClient()
                if self._transport == "aiohttp"
                else None,
            }
            if options.get("azure_api_version"):
                self._client = openai.AsyncAzureOpenAI(
                    azure_endpoint=spec.url, api_version=options["azure_api_version"], **common
                )
            else:
                base_url = f"{spec.url}/v1" if spec.url else DEFAULT_URL
                self._client = openai.AsyncOpenAI(
                    base_url=base_url,
                    organization=options.get("organization"),
                    project=options.get("project"),
                    **common,
                )
        return self._client

    def _call(self, request: UpstreamRequest, stream: bool) -> Any:
        body = _any.decode(request.body)
        body.pop("stream", None)
        if stream:
            body["stream"] = True
        if request.endpoint == Endpoint.EMBEDDINGS:
            # The SDK asks for base64 unless told otherwise; the client asked for what it asked.
            body.setdefault("encoding_format", "float")
        resource: Any = {
            Endpoint.CHAT: self.client.chat.completions,
            Endpoint.COMPLETIONS: self.client.completions,
            Endpoint.EMBEDDINGS: self.client.embeddings,
            Endpoint.RESPONSES: self.client.responses,
        }[request.endpoint]
        create = resource.with_streaming_response.create
        known = frozenset(inspect.signature(create).parameters) - _NOT_PARAMS
        params = split_sdk_params(body, known)
        return lambda: create(**params, extra_headers=request_headers(request))

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        data = await read_raw(
            self._call(request, stream=False), self._spec.timeouts.first_byte, self._where, ERRORS
        )
        return UpstreamResponse(200, data)

    async def open_stream(self, request: UpstreamRequest) -> HeldStream:
        context, response = await open_raw(
            self._call(request, stream=True), self._spec.timeouts.first_byte, self._where, ERRORS
        )
        return HeldStream(context, response, self._where, None, ERRORS)
