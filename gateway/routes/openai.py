"""OpenAI-compatible ``/v1`` handlers: decode once, dispatch, relay the upstream's bytes.

Handlers are closures over the app's :class:`GatewayState` (no globals, no per-request DI). The
inference routes are hot routes (:mod:`gateway.routes.front`); ``/v1/models`` is Litestar's.
Response headers: ``x-request-id`` (the client's, or a new one; also sent upstream),
``x-gateway-overhead-ms`` (the gateway's own time: total minus the wait on the upstream) and
``x-gateway-backend`` (the backend's configured name).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp

from gateway.errors import GatewayError, InvalidRequestError
from gateway.providers.base import Endpoint, UpstreamRequest
from gateway.routes.caching import consult_cache
from gateway.routes.calls import Call, request_id_for
from gateway.routes.front import HotRoute
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

_json = msgspec.json.Encoder()
_any_json = msgspec.json.Decoder()
JSON = "application/json"


def request_id_of(request: Request[Any, Any, Any]) -> str:
    """A Litestar request's id (see :func:`request_id_for`), remembered for its error handler."""
    rid = request_id_for(request.headers)
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


def build_inference_routes(state: GatewayState) -> dict[str, HotRoute]:
    """The OpenAI inference routes bound to ``state``, by path."""
    catalog = state.catalog
    auth = state.auth
    relay = Relay(state)
    max_body = state.settings.server.max_body_bytes

    async def proxy(call: Call, spec: _EndpointSpec) -> ASGIApp:
        started = time.perf_counter()
        request_id = call.request_id
        headers = call.headers
        try:
            auth.check(headers.get("authorization"))
            body = await call.body(max_body)
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
                state, headers, spec.endpoint, group, body, stream, request_id, started
            )
            if decision.response is not None:
                return decision.response
            store, extra, body = decision.store, decision.headers, decision.body

        def request_for(backend: Backend) -> UpstreamRequest:
            data = body if backend.model == client_model else with_model(body, backend.model)
            return UpstreamRequest(spec.endpoint, data, payload, stream, request_id)

        route = RouteRequest(client_model, spec.endpoint, payload, headers)
        exchange = Exchange(
            spec.endpoint, group, route, request_for, stream, started, request_id, store, extra
        )
        if spec.endpoint == Endpoint.EMBEDDINGS and group.settings.batching.enabled:
            return await relay.run_batched(exchange, body)
        return await relay.run(exchange)

    def route(spec: _EndpointSpec) -> HotRoute:
        async def handle(call: Call) -> ASGIApp:
            return await proxy(call, spec)

        return HotRoute(handle)

    return {
        "/v1/chat/completions": route(CHAT),
        "/v1/completions": route(COMPLETIONS),
        "/v1/embeddings": route(EMBEDDINGS),
    }


def build_model_routes(state: GatewayState) -> list[HTTPRouteHandler]:
    """``GET /v1/models`` and ``GET /v1/models/{model}`` bound to ``state``."""
    catalog = state.catalog
    auth = state.auth

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

    return [list_models, retrieve_model]
