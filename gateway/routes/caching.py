"""The response cache on the request path: look up, answer hits, prepare misses for storing.

Response headers: ``x-gateway-cache: hit | miss | bypass | coalesced`` and, on hits, ``age``.
Identical requests in flight at once share the first one's upstream call
(:mod:`gateway.cache.coalesce`).
Entries are namespaced per API key when keys are configured, so tenants never share them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
from litestar.types import ASGIApp

from gateway.cache.coalesce import Flight
from gateway.cache.keys import cache_key, tenant_namespace
from gateway.cache.policy import CacheStore, is_deterministic, parse_cache_control
from gateway.cache.streams import replay
from gateway.errors import GatewayError, status_of
from gateway.routes.front import openai_error_response
from gateway.routes.responses import EVENT_STREAM_CONTENT_TYPE, EventStream, RawResponse
from gateway.routing.backends import ModelGroup
from gateway.state import GatewayState

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
# Rounds a request may follow failing leaders before it goes upstream on its own.
MAX_FOLLOW_ROUNDS = 3


@dataclass(slots=True)
class CacheDecision:
    """What the cache said about a request.

    Attributes:
        response: the answer when it was a hit or a coalesced one (send it, nothing else to do).
        store: where to store the answer of a miss.
        headers: response headers to add (``x-gateway-cache``).
        body: the body to send upstream on a miss: the ``cache_control`` extension removed
            and, for streams, ``stream_options.include_usage`` set.
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
    wants_usage = bool((raw.get("stream_options") or {}).get("include_usage"))
    if not control.no_cache:
        found = await state.cache.get(key)
        if found is not None:
            entry, tier = found
            age = state.cache.age_of(entry)
            if control.max_age is None or age <= control.max_age:
                metrics.child(metrics.cache_requests, group.name, "hit", tier).inc()
                backend = f"cache:{tier}"
                metrics.record_request(
                    group.name, backend, endpoint, 200, time.perf_counter() - started
                )
                headers = {
                    "x-request-id": request_id,
                    "x-gateway-cache": "hit",
                    "age": str(age),
                    "x-gateway-backend": backend,
                }
                hit = response_from(entry.body, endpoint, wants_usage, stream, headers)
                return CacheDecision(hit, None, {}, b"")
    for _ in range(MAX_FOLLOW_ROUNDS):
        flight = state.coalescer.follow(key)
        if flight is None:
            flight = state.coalescer.lead(key)
            break
        if control.no_cache:
            # A refresh goes upstream without taking over the leader's place (its followers
            # still wait on it).
            flight = Flight()
            break
        shared = await _answer_from_flight(flight, endpoint, wants_usage, stream, request_id)
        if shared is not None:
            response, status = shared
            metrics.child(metrics.cache_requests, group.name, "coalesced", "-").inc()
            metrics.record_request(
                group.name, "coalesced", endpoint, status, time.perf_counter() - started
            )
            return CacheDecision(response, None, {}, b"")
        # Cut short without an error: the next round finds a new leader, or leads.
    else:
        flight = Flight()
    metrics.child(metrics.cache_requests, group.name, "miss", "-").inc()
    if stream and not wants_usage:
        # Always ask for usage, so the entry has it; the client's stream leaves it out.
        raw["stream_options"] = {**(raw.get("stream_options") or {}), "include_usage": True}
        body = _encode(raw)
    store = CacheStore(state.cache, key, policy.ttl_s, endpoint, flight, wants_usage)
    return CacheDecision(None, store, {"x-gateway-cache": "miss"}, body)


async def _answer_from_flight(
    flight: Flight, endpoint: str, wants_usage: bool, stream: bool, request_id: str
) -> tuple[ASGIApp, int] | None:
    """Follow an identical request in flight: a response and its status, or None when the
    flight ended with neither answer nor error."""
    headers = {
        "x-request-id": request_id,
        "x-gateway-cache": "coalesced",
        "x-gateway-backend": "coalesced",
    }
    if stream and (live := await flight.join(wants_usage)) is not None:
        return EventStream(live, {**headers, "cache-control": "no-cache"}), 200
    shared = await flight.outcome()
    if shared is not None:
        return response_from(shared, endpoint, wants_usage, stream, headers), 200
    if isinstance(flight.error, GatewayError):
        # The shared call failed: answer with its error rather than every waiter retrying a
        # failing upstream at once (the client's own retry policy decides what next).
        error = flight.error
        return openai_error_response(error, request_id, headers), status_of(error)
    return None


def response_from(
    cached: bytes, endpoint: str, include_usage: bool, stream: bool, headers: dict[str, str]
) -> ASGIApp:
    """A complete stored (or shared) JSON response, as a body or as a replayed stream."""
    if not stream:
        return RawResponse(cached, 200, headers)
    # The whole replay is at hand: one write, no per-chunk sends or disconnect watch needed.
    return RawResponse(
        b"".join(replay(cached, endpoint, include_usage)),
        200,
        {**headers, "cache-control": "no-cache"},
        EVENT_STREAM_CONTENT_TYPE,
    )
