"""The cache stage: answer from the response cache or from an identical request in flight, or
prepare a miss so that its answer is stored and shared.

Response headers: ``x-gateway-cache: hit | miss | bypass | coalesced`` and, on hits, ``age``.
Identical requests in flight at once share the first one's upstream call
(:mod:`gateway.cache.coalesce`). Entries are namespaced per caller
(:attr:`gateway.identity.Principal.namespace`), so tenants never share them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.types import ASGIApp

from gateway.cache.coalesce import Coalescer, Flight
from gateway.cache.keys import cache_key
from gateway.cache.policy import CacheStore, Submit, is_deterministic, parse_cache_control
from gateway.cache.streams import replay, replay_response
from gateway.cache.tiered import TieredCache
from gateway.errors import GatewayError, status_of
from gateway.pipeline.context import RequestContext
from gateway.pipeline.telemetry import Telemetry
from gateway.routes.responses import EVENT_STREAM_CONTENT_TYPE, EventStream, RawResponse

# Rounds a request may follow failing leaders before it goes upstream on its own.
MAX_FOLLOW_ROUNDS = 3
# Endpoints whose streams carry usage only when asked (``stream_options.include_usage``).
USAGE_OPT_IN = frozenset({"chat/completions", "completions"})
# Stores a complete answer the client asked to keep (the pipeline's keep stage).
Keep = Callable[[RequestContext, bytes], Awaitable[None]]


class CacheStage:
    """Looks requests up in the cache and the coalescer; prepares misses for storing."""

    __slots__ = ("_cache", "_coalescer", "_keep", "_submit", "_telemetry")

    def __init__(
        self,
        cache: TieredCache,
        coalescer: Coalescer,
        submit: Submit,
        telemetry: Telemetry,
        keep: Keep,
    ) -> None:
        self._cache = cache
        self._coalescer = coalescer
        self._submit = submit
        self._telemetry = telemetry
        self._keep = keep

    async def consult(self, ctx: RequestContext) -> ASGIApp | None:
        """The answer when the cache (or a request in flight) has it; else None, with the miss
        prepared: ``ctx.cache_store`` set and the body ready to send upstream (the gateway's
        ``cache_control`` extension removed; for streams, usage always asked for, so that the
        entry carries it)."""
        group, endpoint, telemetry = ctx.model_group, ctx.dialect.endpoint, self._telemetry
        policy = group.settings.cache
        raw = ctx.raw
        extension = raw.pop("cache_control", None)
        if extension is not None:
            ctx.body_changed()  # never send the gateway's own extension upstream
        control = parse_cache_control(
            ctx.headers.get("cache-control"), extension if isinstance(extension, str) else None
        )
        if control.no_store or (policy.deterministic_only and not is_deterministic(endpoint, raw)):
            telemetry.cache(group.name, "bypass")
            ctx.response_headers["x-gateway-cache"] = "bypass"
            return None
        key = cache_key(ctx.principal.namespace, group.name, endpoint, raw)
        options = raw.get("stream_options")
        wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        if not control.no_cache:
            found = await self._cache.get(key)
            if found is not None:
                entry, tier = found
                age = self._cache.age_of(entry)
                if control.max_age is None or age <= control.max_age:
                    telemetry.cache(group.name, "hit", tier)
                    ctx.served_from, ctx.served_status = "hit", 200
                    backend = f"cache:{tier}"
                    telemetry.answered(ctx, backend, 200)
                    headers = {
                        **ctx.response_headers,
                        "x-request-id": ctx.request_id,
                        "x-gateway-cache": "hit",
                        "age": str(age),
                        "x-gateway-backend": backend,
                    }
                    answer = await self._own(ctx, entry.body)
                    return response_from(answer, endpoint, wants_usage, ctx.stream, headers)
        flight = await self._follow(ctx, key, control.no_cache, wants_usage)
        if not isinstance(flight, Flight):
            return flight
        telemetry.cache(group.name, "miss")
        # From here on this request leads (or flies alone): whatever fails, the flight must
        # finish, or identical requests would wait on it forever.
        ctx.cache_store = store = CacheStore(
            self._cache, key, policy.ttl_s, endpoint, flight, self._submit, wants_usage
        )
        ctx.response_headers["x-gateway-cache"] = "miss"
        if ctx.stream and not wants_usage and endpoint in USAGE_OPT_IN:
            # Always ask for usage, so the entry has it; the client's stream leaves it out.
            try:
                raw["stream_options"] = {**(options or {}), "include_usage": True}
                ctx.body_changed()
            except BaseException:
                store.release()
                raise
        return None

    async def _follow(
        self, ctx: RequestContext, key: str, refresh: bool, wants_usage: bool
    ) -> Flight | ASGIApp:
        """Follow an identical request in flight (its answer), or the flight this request
        leads (or flies alone, for a refresh or after failed leaders)."""
        coalescer = self._coalescer
        for _ in range(MAX_FOLLOW_ROUNDS):
            flight = coalescer.follow(key)
            if flight is None:
                return coalescer.lead(key)
            if refresh:
                # A refresh goes upstream without taking over the leader's place (its followers
                # still wait on it).
                return coalescer.solo()
            shared = await self._answer_from_flight(flight, ctx, wants_usage)
            if shared is not None:
                response, status = shared
                ctx.served_from, ctx.served_status = "coalesced", status
                self._telemetry.cache(ctx.model_group.name, "coalesced")
                self._telemetry.answered(ctx, "coalesced", status)
                return response
            # Cut short without an error: the next round finds a new leader, or leads.
        return coalescer.solo()

    async def _answer_from_flight(
        self, flight: Flight, ctx: RequestContext, wants_usage: bool
    ) -> tuple[ASGIApp, int] | None:
        """A response from the flight and its status, or None when the flight ended with neither
        answer nor error."""
        headers = {
            **ctx.response_headers,
            "x-request-id": ctx.request_id,
            "x-gateway-cache": "coalesced",
            "x-gateway-backend": "coalesced",
        }
        live_allowed = ctx.stream and ctx.dialect.follows_live
        if live_allowed and (live := await flight.join(wants_usage)) is not None:
            return EventStream(live, {**headers, "cache-control": "no-cache"}), 200
        shared = await flight.outcome()
        if shared is not None:
            answer = await self._own(ctx, shared)
            endpoint = ctx.dialect.endpoint
            return response_from(answer, endpoint, wants_usage, ctx.stream, headers), 200
        if isinstance(flight.error, GatewayError):
            # The shared call failed: answer with its error rather than every waiter retrying a
            # failing upstream at once (the client's own retry policy decides what next).
            error = flight.error
            return ctx.dialect.errors.response(error, ctx.request_id, headers), status_of(error)
        return None

    async def _own(self, ctx: RequestContext, answer: bytes) -> bytes:
        """A shared answer made this request's own (its ids), and kept when the client asked
        for it to be stored."""
        answer = ctx.dialect.fresh(ctx, answer)
        if ctx.dialect.keeps(ctx):
            await self._keep(ctx, answer)
        return answer


def response_from(
    cached: bytes, endpoint: str, include_usage: bool, stream: bool, headers: dict[str, str]
) -> ASGIApp:
    """A complete stored (or shared) JSON response, as a body or as a replayed stream."""
    if not stream:
        return RawResponse(cached, 200, headers)
    events = (
        replay_response(cached)
        if endpoint == "responses"
        else replay(cached, endpoint, include_usage)
    )
    # The whole replay is at hand: one write, no per-chunk sends or disconnect watch needed.
    return RawResponse(
        b"".join(events),
        200,
        {**headers, "cache-control": "no-cache"},
        EVENT_STREAM_CONTENT_TYPE,
    )
