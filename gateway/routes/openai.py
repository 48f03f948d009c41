"""OpenAI-compatible ``/v1`` handlers: decode once, dispatch, relay the upstream's bytes.

Handlers are closures over the app's :class:`GatewayState` (no globals, no per-request DI).
Response headers: ``x-request-id`` (the client's, or a new one; also sent upstream),
``x-gateway-overhead-ms`` (the gateway's own time: total minus the wait on the upstream) and
``x-gateway-backend`` (the backend's configured name).
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream
from litestar.types import ASGIApp

from gateway.errors import GatewayError, InvalidRequestError, status_of
from gateway.providers.base import Endpoint, UpstreamRequest
from gateway.routes.responses import RawResponse
from gateway.routing.backends import Backend
from gateway.routing.base import RouteRequest
from gateway.routing.dispatch import OpenStream, dispatch, dispatch_stream
from gateway.schemas.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    usage_decoder,
)
from gateway.schemas.validation import split_validation_message
from gateway.state import GatewayState

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_json = msgspec.json.Encoder()
_any_json = msgspec.json.Decoder()
JSON = "application/json"


# Generated ids: a random per-process prefix and a counter; unique across processes and restarts,
# and several times cheaper than uuid4() on the hot path.
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count()


def request_id_of(request: Request[Any, Any, Any]) -> str:
    """The client's ``x-request-id`` when well-formed, else a new one; remembered on the request."""
    rid = request.headers.get("x-request-id")
    if not rid or not _REQUEST_ID.fullmatch(rid):
        rid = f"{_ID_PREFIX}{next(_id_counter):08x}"
    request.scope["state"]["request_id"] = rid
    return rid


def decode_payload(body: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    """Validate a request body.

    Raises:
        InvalidRequestError: not JSON, or a field is missing or invalid (``param`` names it).
    """
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        field, problem = split_validation_message(str(exc))
        message = f"Invalid `{field}`: {problem}" if field else f"Invalid request body: {problem}"
        raise InvalidRequestError(message, param=field, code="invalid_value") from None
    except msgspec.DecodeError:
        raise InvalidRequestError(
            "The request body is not valid JSON.", code="invalid_json"
        ) from None


def with_model(body: bytes, model: str) -> bytes:
    """``body`` with its ``model`` field replaced; every other field is kept as it was."""
    data = _any_json.decode(body)
    data["model"] = model
    return _json.encode(data)


def usage_in_stream_tail(tail: bytes) -> tuple[int, int]:
    """Prompt and completion tokens from the last usage-bearing SSE event in ``tail``."""
    for event in reversed(tail.split(b"\n\n")):
        event = event.strip()
        if not event.startswith(b"data: {") or b'"usage"' not in event:
            continue
        try:
            usage = usage_decoder.decode(event[6:]).usage
        except msgspec.MsgspecError:
            continue
        if usage is not None:
            return usage.prompt_tokens, usage.completion_tokens
    return 0, 0


@dataclass(frozen=True, slots=True)
class _EndpointSpec:
    endpoint: Endpoint
    decoder: msgspec.json.Decoder[Any]
    streams: bool


CHAT = _EndpointSpec(Endpoint.CHAT, msgspec.json.Decoder(ChatCompletionRequest), True)
COMPLETIONS = _EndpointSpec(Endpoint.COMPLETIONS, msgspec.json.Decoder(CompletionRequest), True)
EMBEDDINGS = _EndpointSpec(Endpoint.EMBEDDINGS, msgspec.json.Decoder(EmbeddingRequest), False)


def build_openai_routes(state: GatewayState) -> list[HTTPRouteHandler]:
    """The ``/v1`` handlers bound to ``state``."""
    metrics = state.metrics
    catalog = state.catalog
    auth = state.auth

    async def proxy(request: Request[Any, Any, Any], spec: _EndpointSpec) -> ASGIApp:
        started = time.perf_counter()
        request_id = request_id_of(request)
        try:
            auth.check(request.headers.get("authorization"))
            body = await request.body()
            payload = decode_payload(body, spec.decoder)
            group = catalog.resolve(payload.model)
        except GatewayError as exc:
            # Rejected before routing: counted under model "-" so 4xx rates stay visible.
            metrics.record_request(
                "-", "none", spec.endpoint, status_of(exc), time.perf_counter() - started
            )
            raise
        stream = spec.streams and bool(payload.stream)
        client_model: str = payload.model

        def request_for(backend: Backend) -> UpstreamRequest:
            data = body if backend.model == client_model else with_model(body, backend.model)
            return UpstreamRequest(spec.endpoint, data, payload, stream, request_id)

        route = RouteRequest(client_model, spec.endpoint, payload, request.headers)
        in_flight = metrics.child(metrics.in_flight, group.name)
        in_flight.inc()
        try:
            if stream:
                opened = await dispatch_stream(group, route, request_for)
            else:
                out = await dispatch(group, route, request_for)
        except GatewayError as exc:
            in_flight.dec()
            metrics.record_request(
                group.name,
                exc.backend or "none",
                spec.endpoint,
                status_of(exc),
                time.perf_counter() - started,
            )
            raise
        if stream:
            overhead = time.perf_counter() - started - opened.upstream_s
            metrics.record_upstream(
                group.name, opened.backend.name, spec.endpoint, opened.upstream_s, overhead
            )
            headers = {
                "x-request-id": request_id,
                "x-gateway-backend": opened.backend.name,
                "x-gateway-overhead-ms": f"{overhead * 1000:.3f}",
                "cache-control": "no-cache",
            }
            events = Stream(
                relay(opened, group.name, spec.endpoint, started, in_flight),
                media_type="text/event-stream",
                headers=headers,
            )
            response: ASGIApp = events.to_asgi_response(None, request)
            return response
        in_flight.dec()
        total = time.perf_counter() - started
        backend = out.backend.name
        metrics.record_upstream(
            group.name, backend, spec.endpoint, out.upstream_s, total - out.upstream_s
        )
        metrics.record_request(group.name, backend, spec.endpoint, out.response.status, total)
        try:
            usage = usage_decoder.decode(out.response.body).usage
        except msgspec.MsgspecError:
            usage = None
        if usage is not None:
            metrics.record_tokens(group.name, backend, usage.prompt_tokens, usage.completion_tokens)
        headers = {
            "x-request-id": request_id,
            "x-gateway-backend": backend,
            "x-gateway-overhead-ms": f"{(total - out.upstream_s) * 1000:.3f}",
        }
        return RawResponse(out.response.body, out.response.status, headers)

    async def relay(
        opened: OpenStream, model: str, endpoint: str, started: float, in_flight: Any
    ) -> AsyncIterator[bytes]:
        """Forward upstream chunks as they come; close the upstream however the stream ends."""
        backend = opened.backend.name
        status = 499  # stays so if the client goes away first
        previous = last = b""
        first = True
        try:
            async for chunk in opened.chunks():
                if first:
                    first = False
                    metrics.child(metrics.ttft_seconds, model, backend).observe(
                        time.perf_counter() - started
                    )
                previous, last = last, chunk
                yield chunk
            status = 200
        except GatewayError as exc:
            # Bytes already reached the client: the failure becomes an error event that the
            # OpenAI SDK raises as APIError, instead of a silent truncation.
            status = status_of(exc)
            yield b"data: " + exc.to_json() + b"\n\n"
        finally:
            with anyio.CancelScope(shield=True):
                await opened.aclose()
            in_flight.dec()
            metrics.record_request(model, backend, endpoint, status, time.perf_counter() - started)
            prompt, completion = usage_in_stream_tail(previous + last)
            metrics.record_tokens(model, backend, prompt, completion)

    @post("/v1/chat/completions", status_code=200)
    async def chat_completions(request: Request[Any, Any, Any]) -> ASGIApp:
        return await proxy(request, CHAT)

    @post("/v1/completions", status_code=200)
    async def completions(request: Request[Any, Any, Any]) -> ASGIApp:
        return await proxy(request, COMPLETIONS)

    @post("/v1/embeddings", status_code=200)
    async def embeddings(request: Request[Any, Any, Any]) -> ASGIApp:
        return await proxy(request, EMBEDDINGS)

    @get("/v1/models")
    async def list_models(request: Request[Any, Any, Any]) -> Response[Any]:
        request_id = request_id_of(request)
        auth.check(request.headers.get("authorization"))
        cards = [
            ModelCard(name, group.created, group.settings.owned_by)
            for name, group in catalog.public_names()
        ]
        return Response(
            _json.encode(ModelList(cards)), media_type=JSON, headers={"x-request-id": request_id}
        )

    @get("/v1/models/{model:path}")
    async def retrieve_model(request: Request[Any, Any, Any]) -> Response[Any]:
        request_id = request_id_of(request)
        auth.check(request.headers.get("authorization"))
        name = str(request.path_params["model"]).lstrip("/")
        group = catalog.resolve(name)
        card = ModelCard(name, group.created, group.settings.owned_by)
        return Response(_json.encode(card), media_type=JSON, headers={"x-request-id": request_id})

    return [chat_completions, completions, embeddings, list_models, retrieve_model]
