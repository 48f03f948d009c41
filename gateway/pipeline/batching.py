"""Batching glue: the dispatch stage for embedding requests of groups that batch.

Each group gets one :class:`~gateway.batching.embeddings.EmbeddingBatcher`, whose merged
upstream calls go through the group's routing, retries and breakers like any other request.
"""

from __future__ import annotations

import msgspec
from litestar.types import ASGIApp

from gateway.background import Spawn
from gateway.batching.embeddings import BatchLimits, EmbeddingBatcher
from gateway.codec import decode_request, with_model
from gateway.errors import GatewayError, status_of
from gateway.pipeline.context import RequestContext
from gateway.pipeline.telemetry import Account, Telemetry, usage_of
from gateway.providers.base import Endpoint, UpstreamRequest
from gateway.routes.responses import RawResponse
from gateway.routing.backends import Backend, ModelGroup
from gateway.routing.base import RouteRequest
from gateway.routing.dispatch import dispatch
from gateway.schemas.openai import EmbeddingRequest

_embedding_request = msgspec.json.Decoder(EmbeddingRequest)
BACKEND = "batch"  # the metrics label and x-gateway-backend of batched answers


class EmbeddingBatching:
    """Answers embeddings requests of batching groups through their group's batcher."""

    __slots__ = ("_batchers", "_spawn", "_telemetry")

    def __init__(self, telemetry: Telemetry, spawn: Spawn) -> None:
        self._telemetry = telemetry
        self._spawn = spawn
        self._batchers: dict[str, EmbeddingBatcher] = {}

    def batcher_for(self, group: ModelGroup) -> EmbeddingBatcher:
        """The group's batcher, made on first use."""
        batcher = self._batchers.get(group.name)
        if batcher is None:
            limits = group.settings.batching
            batcher = self._batchers[group.name] = EmbeddingBatcher(
                BatchLimits(limits.max_inputs, limits.max_tokens, limits.max_wait_ms),
                lambda body: self._send(group, body),
                self._spawn,
            )
        return batcher

    async def _send(self, group: ModelGroup, body: bytes) -> bytes:
        """One merged upstream call, routed within the group."""
        payload = decode_request(body, _embedding_request)
        route = RouteRequest(payload.model, Endpoint.EMBEDDINGS.value, payload, {})

        def request_for(backend: Backend) -> UpstreamRequest:
            data = body if backend.model == payload.model else with_model(body, backend.model)
            return UpstreamRequest(Endpoint.EMBEDDINGS, data, payload, False, f"batch-{id(body):x}")

        out = await dispatch(group, route, request_for, self._telemetry)
        self._telemetry.outcome(group, out.backend, None)
        return out.response.body

    async def answer(self, ctx: RequestContext, account: Account) -> ASGIApp:
        """Dispatch ``ctx`` through its group's batcher and answer it."""
        telemetry = self._telemetry
        in_flight = telemetry.in_flight(ctx.model_group)
        try:
            data = await self.batcher_for(ctx.model_group).submit(ctx.body)
        except BaseException as exc:
            if ctx.cache_store is not None:
                ctx.cache_store.release(exc if isinstance(exc, GatewayError) else None)
            telemetry.failed(ctx, exc, BACKEND)
            status = status_of(exc) if isinstance(exc, GatewayError) else 499
            account(ctx, BACKEND, status, None)
            raise
        finally:
            in_flight.dec()
        telemetry.answered(ctx, BACKEND, 200)
        account(ctx, BACKEND, 200, usage_of(data))
        if ctx.cache_store is not None:
            ctx.cache_store.save(data)
        headers = {
            "x-request-id": ctx.request_id,
            "x-gateway-backend": BACKEND,
            **ctx.response_headers,
        }
        return RawResponse(data, 200, headers)
