"""The dispatch stage: route within the request's group, then on to its fallback groups.

Routing, retries and breakers within one group are :mod:`gateway.routing.dispatch`'s; this
policy decides when a failed group hands the request on:

- ``fallbacks`` when the group could not answer (no backend available, or retries exhausted
  on retryable failures);
- ``context_window_fallbacks`` when an upstream said the prompt is too long.

Each group is tried at most once per request.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import GatewayError, PermissionDeniedError, UpstreamUnavailableError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.telemetry import Telemetry
from gateway.providers.base import UpstreamRequest
from gateway.routing.backends import Backend, ModelCatalog, ModelGroup
from gateway.routing.base import RouteRequest
from gateway.routing.dispatch import (
    Dispatched,
    DispatchObserver,
    OpenStream,
    dispatch,
    dispatch_stream,
)
from gateway.routing.retry import is_context_length_error, is_retryable
from gateway.telemetry.tracing import RequestTrace


def fallback_reason(error: GatewayError) -> str | None:
    """Why ``error`` sends a request to a fallback group: ``context_window``, ``unavailable``,
    or None when it is the request's own fault (no fallback then)."""
    if is_context_length_error(error):
        return "context_window"
    if is_retryable(error) or isinstance(error, UpstreamUnavailableError):
        return "unavailable"
    return None


def is_local(group: ModelGroup) -> bool:
    """Whether every backend of ``group`` is marked ``local`` (none is a cloud API)."""
    return all(b.spec.local for b in group.backends)


def require_local(group: ModelGroup) -> None:
    """The privacy gate of an agent routed ``local_only``.

    Raises:
        PermissionDeniedError: ``group`` has a backend not marked local (403 ``local_only``).
    """
    if not is_local(group):
        raise PermissionDeniedError(
            f"Model `{group.name}` may not serve this agent: it is routed `local_only` and "
            "the group has a backend not marked `local`.",
            param="model",
            code="local_only",
        )


class FallbackPolicy:
    """Dispatches a request to its group and, while the policy allows, to fallback groups."""

    __slots__ = ("_catalog", "_guards", "_telemetry")

    def __init__(
        self,
        catalog: ModelCatalog,
        telemetry: Telemetry,
        guards: Mapping[str, object] | None = None,
    ) -> None:
        self._catalog = catalog
        self._telemetry = telemetry
        self._guards = guards or {}

    async def dispatch(self, ctx: RequestContext) -> Dispatched | OpenStream:
        """The upstream's answer (a body, or an open stream the caller must close); sets
        ``ctx.upstream_s``.

        Raises:
            GatewayError: the last group's failure, when no fallback applies.
        """
        group = ctx.model_group
        dialect = ctx.dialect
        route = RouteRequest(ctx.model, dialect.endpoint, ctx.payload, ctx.headers)
        trace = ctx.trace
        observer: DispatchObserver = self._telemetry
        if trace is None:

            def request_for(backend: Backend) -> UpstreamRequest:
                return dialect.upstream_request(ctx, backend)

        else:
            observer = _Traced(self._telemetry, trace)

            def request_for(backend: Backend) -> UpstreamRequest:
                request = dialect.upstream_request(ctx, backend)
                request.headers = trace.headers()  # the attempt's span is the upstream's parent
                return request

        seen = {group.name}
        while True:
            try:
                if ctx.stream:
                    opened = await dispatch_stream(group, route, request_for, observer)
                    ctx.upstream_s = opened.upstream_s
                    return opened
                done = await dispatch(group, route, request_for, observer)
                ctx.upstream_s = done.upstream_s
                return done
            except GatewayError as exc:
                group = self._next_group(group, exc, seen, ctx)

    def _may_take(self, group: ModelGroup, name: str, ctx: RequestContext) -> bool:
        """Whether fallback group ``name`` may serve a request ``group`` could not: the same
        guardrails (a request is never checked by one group's and answered by another's), and
        local when the request is a ``local_only`` step."""
        if self._guards.get(group.name) is not self._guards.get(name):
            return False
        return ctx.step is None or not ctx.step.local_only or is_local(self._catalog.resolve(name))

    def _next_group(
        self, group: ModelGroup, error: GatewayError, seen: set[str], ctx: RequestContext
    ) -> ModelGroup:
        """The fallback group to try after ``group`` failed with ``error``, or raise it."""
        backend = next((b for b in group.backends if b.name == error.backend), None)
        if backend is not None:
            self._telemetry.outcome(group, backend, error)
        reason = fallback_reason(error)
        if reason is None:
            raise error
        settings = group.settings
        names = (
            settings.context_window_fallbacks if reason == "context_window" else settings.fallbacks
        )
        target = next((n for n in names if n not in seen and self._may_take(group, n, ctx)), None)
        if target is None:
            raise error
        seen.add(target)
        self._telemetry.fallback(ctx.model_group.name, target, reason)
        return self._catalog.resolve(target)


class _Traced:
    """The metrics and a request's trace, both told of each attempt."""

    __slots__ = ("_telemetry", "_trace")

    def __init__(self, telemetry: Telemetry, trace: RequestTrace) -> None:
        self._telemetry = telemetry
        self._trace = trace

    def routed(self, group: ModelGroup, backend: Backend, reason: str) -> None:
        self._telemetry.routed(group, backend, reason)
        self._trace.routed(group, backend, reason)

    def attempt_failed(self, group: ModelGroup, backend: Backend, error: GatewayError) -> None:
        self._trace.attempt_failed(group, backend, error)

    def retried(self, group: ModelGroup, backend: Backend) -> None:
        self._telemetry.retried(group, backend)
