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
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp

from gateway.errors import GatewayError, InvalidRequestError
from gateway.providers.base import Endpoint, UpstreamRequest
from gateway.routes.caching import consult_cache
from gateway.routes.relay import Exchange, Relay, with_model
from gateway.routing.backends import Backend
from gateway.routing.base import RouteRequest
from gateway.schemas.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
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
    catalog = state.catalog
    auth = state.auth
    relay = Relay(state)

    async def proxy(request: Request[Any, Any, Any], spec: _EndpointSpec) -> ASGIApp:
        started = time.perf_counter()
        request_id = request_id_of(request)
        try:
            auth.check(request.headers.get("authorization"))
            body = await request.body()
            payload = decode_payload(body, spec.decoder)
            group = catalog.resolve(payload.model)
        except GatewayError as exc:
            relay.rejected(spec.endpoint, exc, started)
            raise
        stream = spec.streams and bool(payload.stream)
        client_model: str = payload.model
        store, extra = None, None
        if state.cache is not None and group.settings.cache.enabled:
            decision = await consult_cache(
                state, request, spec.endpoint, group, body, stream, request_id, started
            )
            if decision.response is not None:
                return decision.response
            store, extra, body = decision.store, decision.headers, decision.body

        def request_for(backend: Backend) -> UpstreamRequest:
            data = body if backend.model == client_model else with_model(body, backend.model)
            return UpstreamRequest(spec.endpoint, data, payload, stream, request_id)

        route = RouteRequest(client_model, spec.endpoint, payload, request.headers)
        exchange = Exchange(
            request,
            spec.endpoint,
            group,
            route,
            request_for,
            stream,
            started,
            request_id,
            store,
            extra,
        )
        if spec.endpoint == Endpoint.EMBEDDINGS and group.settings.batching.enabled:
            return await relay.run_batched(exchange, body)
        return await relay.run(exchange)

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
