"""OpenAI's API: the chat, completions and embeddings dialects, and ``/v1/models``.

The inference routes are hot routes (:mod:`gateway.routes.front`) served by the pipeline
(:mod:`gateway.pipeline.pipeline`); this module only says how OpenAI's requests are decoded and
sent. OpenAI-format backends get the client's bytes as they came (the model name replaced when
the backend calls it otherwise), so fields the gateway does not model pass through untouched.
Response headers: ``x-request-id`` (the client's, or a new one; also sent upstream),
``x-gateway-overhead-ms`` (the gateway's own time: total minus the wait on the upstream) and
``x-gateway-backend`` (the backend's configured name).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp

from gateway.cache.streams import assembler_for
from gateway.codec import decode, decode_request, encode
from gateway.errors import ModelNotFoundError
from gateway.pipeline.context import Converter, Dialect, RequestContext, StreamRecorder
from gateway.pipeline.pipeline import Pipeline
from gateway.providers.base import Endpoint, UpstreamRequest
from gateway.routes.calls import Call, request_id_for
from gateway.routes.errors import OPENAI_ERRORS
from gateway.routes.front import HotRoute
from gateway.routes.openai_responses import RESPONSES
from gateway.routing.backends import Backend
from gateway.schemas.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
)
from gateway.state import GatewayState
from gateway.stores.base import StoredObject

JSON = "application/json"


class OpenAIDialect:
    """One OpenAI endpoint, relayed to OpenAI-format backends as it came.

    Satisfies :class:`gateway.pipeline.context.Dialect`.
    """

    __slots__ = (
        "_decoder",
        "_upstream",
        "batchable",
        "cacheable",
        "endpoint",
        "follows_live",
        "streams",
    )
    errors = OPENAI_ERRORS

    def __init__(
        self, endpoint: Endpoint, request_type: type[Any], streams: bool, batchable: bool = False
    ) -> None:
        self._upstream = endpoint
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(request_type)
        self.endpoint = endpoint.value
        self.streams = streams
        self.cacheable = True
        self.follows_live = True
        self.batchable = batchable

    def decode(self, body: bytes) -> Any:
        return decode_request(body, self._decoder)

    async def prepare(self, ctx: RequestContext) -> None:
        return None

    def upstream_request(self, ctx: RequestContext, backend: Backend) -> UpstreamRequest:
        return UpstreamRequest(
            self._upstream, ctx.body_for(backend.model), ctx.payload, ctx.stream, ctx.request_id
        )

    def converter(self, ctx: RequestContext, backend: Backend) -> Converter | None:
        return None

    def fresh(self, ctx: RequestContext, answer: bytes) -> bytes:
        """A cached completion keeps its id (the response says it is a hit), unless it is to be
        stored: then it is a completion of its own, with its own id and metadata."""
        if not self.keeps(ctx):
            return answer
        body = decode(answer)
        body["id"] = f"chatcmpl-{ctx.request_id}"
        body["metadata"] = dict(ctx.payload.metadata or {})
        return encode(body)

    def keeps(self, ctx: RequestContext) -> bool:
        """Stored completions: chat requests with ``store: true``."""
        return self._upstream is Endpoint.CHAT and ctx.payload.store is True

    def record(self, ctx: RequestContext, answer: bytes) -> StoredObject:
        body = decode(answer)
        return StoredObject(
            id=str(body.get("id") or ctx.request_id),
            kind="chat.completion",
            created_at=float(body.get("created") or time.time()),
            model=ctx.model,
            body=body,
            metadata=dict(ctx.payload.metadata or {}),
            input_items=list(ctx.raw.get("messages") or []),
        )

    def recorder(self, ctx: RequestContext) -> StreamRecorder:
        return assembler_for(self.endpoint)


CHAT = OpenAIDialect(Endpoint.CHAT, ChatCompletionRequest, streams=True)
COMPLETIONS = OpenAIDialect(Endpoint.COMPLETIONS, CompletionRequest, streams=True)
EMBEDDINGS = OpenAIDialect(Endpoint.EMBEDDINGS, EmbeddingRequest, streams=False, batchable=True)


def build_inference_routes(pipeline: Pipeline) -> dict[str, HotRoute]:
    """The OpenAI inference routes served by ``pipeline``, by path (``/v1/responses`` too)."""

    def route(dialect: Dialect, shared: bool = False) -> HotRoute:
        async def handle(call: Call) -> ASGIApp:
            return await pipeline.serve(call, dialect)

        return HotRoute(handle, OPENAI_ERRORS.response, shared)

    return {
        "/v1/chat/completions": route(CHAT, shared=True),
        "/v1/completions": route(COMPLETIONS),
        "/v1/embeddings": route(EMBEDDINGS),
        "/v1/responses": route(RESPONSES),
    }


def request_id_of(request: Request[Any, Any, Any]) -> str:
    """A Litestar request's id (see :func:`request_id_for`), remembered for its error handler."""
    rid = request_id_for(request.headers)
    request.scope["state"]["request_id"] = rid
    return rid


def build_model_routes(state: GatewayState) -> list[HTTPRouteHandler]:
    """``GET /v1/models`` and ``GET /v1/models/{model}`` bound to ``state``; each caller sees
    the models it may use."""
    catalog = state.catalog
    auth = state.auth

    @get("/v1/models")
    async def list_models(request: Request[Any, Any, Any]) -> Response[Any]:
        request_id = request_id_of(request)
        principal = await auth.authenticate(request.headers)
        cards = [
            ModelCard(name, group.created, group.settings.owned_by)
            for name, group in catalog.public_names()
            if principal.may_use(name)
        ]
        return Response(
            encode(ModelList(cards)), media_type=JSON, headers={"x-request-id": request_id}
        )

    @get("/v1/models/{model:path}")
    async def retrieve_model(request: Request[Any, Any, Any]) -> Response[Any]:
        request_id = request_id_of(request)
        principal = await auth.authenticate(request.headers)
        name = str(request.path_params["model"]).lstrip("/")
        group = catalog.resolve(name)
        if not principal.may_use(name):
            raise ModelNotFoundError(name)  # never reveal the models of others
        card = ModelCard(name, group.created, group.settings.owned_by)
        return Response(encode(card), media_type=JSON, headers={"x-request-id": request_id})

    return [list_models, retrieve_model]
