"""The response cache on the request path: look up, answer hits, prepare misses for storing.

Response headers: ``x-gateway-cache: hit | miss | bypass | coalesced`` and, on hits, ``age``.
Identical requests in flight at once share the first one's upstream call
(:mod:`gateway.cache.coalesce`).
Entries are namespaced per API key when keys are configured, so tenants never share them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.types import ASGIApp

from gateway.cache.keys import cache_key, tenant_namespace
from gateway.cache.policy import CacheStore, age_of, is_deterministic, parse_cache_control
from gateway.cache.streams import replay
from gateway.routes.responses import EVENT_STREAM_CONTENT_TYPE, RawResponse
from gateway.routing.backends import ModelGroup
from gateway.state import GatewayState

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class CacheDecision:
    """What the cache said about a request.

    Attributes:
        response: the answer when it was a hit (send it, nothing else to do).
        store: where to store the answer of a miss.
        headers: response headers to add (``x-gateway-cache``).
        body: the body to send upstream (the ``cache_control`` extension removed).
    """

    response: ASGIApp | None
    store: CacheStore | None
    headers: dict[str, str]
    body: bytes


def _bearer(headers: Mapping[str, str]) -> str | None:
    header = headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else headers.get("x-api-key")


async def consult_cache(
    state: GatewayState,
    request_headers: Mapping[str, str],
    endpoint: str,
    group: ModelGroup,
    body: bytes,
    stream: bool,
    request_id: str,
    started: float,
) -> CacheDecision:
    """Decide bypass, hit or miss for a request to a caching group."""
    assert state.cache is not None
    metrics, policy = state.metrics, group.settings.cache
    raw = _decode(body)
    extension = raw.pop("cache_control", None)
    if extension is not None:
        body = _encode(raw)  # never send the gateway's own extension upstream
    control = parse_cache_control(
        request_headers.get("cache-control"), extension if isinstance(extension, str) else None
    )
    if control.no_store or (policy.deterministic_only and not is_deterministic(endpoint, raw)):
        metrics.child(metrics.cache_requests, group.name, "bypass", "-").inc()
        return CacheDecision(None, None, {"x-gateway-cache": "bypass"}, body)
    namespace = tenant_namespace(_bearer(request_headers) if state.auth.enabled else None)
    key = cache_key(namespace, group.name, endpoint, raw)
    if not control.no_cache:
        found = await state.cache.get(key)
        if found is not None:
            entry, tier = found
            age = age_of(entry.created)
            if control.max_age is None or age <= control.max_age:
                metrics.child(metrics.cache_requests, group.name, "hit", tier).inc()
                headers = {
                    "x-gateway-cache": "hit",
                    "age": str(age),
                    "x-gateway-backend": f"cache:{tier}",
                }
                return answer_from(
                    entry.body,
                    state,
                    endpoint,
                    group,
                    raw,
                    stream,
                    request_id,
                    started,
                    headers,
                    body,
                )
    leader = state.coalescer.follow(key)
    if leader is not None:
        if not control.no_cache:
            # Shielded: this follower going away must not cancel the leader's answer.
            shared = await asyncio.shield(leader)
            if shared is not None:
                metrics.child(metrics.cache_requests, group.name, "coalesced", "-").inc()
                headers = {"x-gateway-cache": "coalesced", "x-gateway-backend": "coalesced"}
                return answer_from(
                    shared,
                    state,
                    endpoint,
                    group,
                    raw,
                    stream,
                    request_id,
                    started,
                    headers,
                    body,
                )
        # A refresh (no-cache), or the leader failed: go upstream, without taking over the
        # leader's place (its own followers still wait on it).
        metrics.child(metrics.cache_requests, group.name, "miss", "-").inc()
        store = CacheStore(state.cache, key, policy.ttl_s, endpoint)
        return CacheDecision(None, store, {"x-gateway-cache": "miss"}, body)
    state.coalescer.lead(key)
    metrics.child(metrics.cache_requests, group.name, "miss", "-").inc()
    store = CacheStore(state.cache, key, policy.ttl_s, endpoint, state.coalescer)
    return CacheDecision(None, store, {"x-gateway-cache": "miss"}, body)


def answer_from(
    cached: bytes,
    state: GatewayState,
    endpoint: str,
    group: ModelGroup,
    raw: dict[str, Any],
    stream: bool,
    request_id: str,
    started: float,
    headers: dict[str, str],
    body: bytes,
) -> CacheDecision:
    """Answer a request from a complete stored (or shared) response, as a body or a stream."""
    state.metrics.record_request(
        group.name, headers["x-gateway-backend"], endpoint, 200, time.perf_counter() - started
    )
    headers = {"x-request-id": request_id, **headers}
    if not stream:
        return CacheDecision(RawResponse(cached, 200, headers), None, {}, body)
    usage = bool((raw.get("stream_options") or {}).get("include_usage"))
    # The whole replay is at hand: one write, no per-chunk sends or disconnect watch needed.
    events = RawResponse(
        b"".join(replay(cached, endpoint, usage)),
        200,
        {**headers, "cache-control": "no-cache"},
        EVENT_STREAM_CONTENT_TYPE,
    )
    return CacheDecision(events, None, {}, body)
