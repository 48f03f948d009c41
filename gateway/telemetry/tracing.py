"""What the request path knows of tracing: two small Protocols, and nothing that imports
OpenTelemetry.

Tracing is decided once, when the app is built: with ``tracing.enabled`` off there is no
:class:`Tracer` (``GatewayState.tracing`` is None), no request gets a :class:`RequestTrace`
(``RequestContext.trace`` stays None), and the only cost on the request path is that None
check where a request starts, is dispatched, is answered and ends. With it on,
:mod:`gateway.telemetry.otel` implements both (``docs/tracing.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from gateway.agents.base import RunUsage
    from gateway.errors import GatewayError
    from gateway.pipeline.context import RequestContext, StepInfo
    from gateway.routing.backends import Backend, ModelGroup


SpanExporterFactory: TypeAlias = Callable[..., "SpanExporter"]
"""``register_span_exporters``: ``factory(**options)`` builds the exporter ``tracing.exporter``
names; ``TypeError``/``ValueError`` for bad options (the gateway names the config field)."""


class RequestTrace(Protocol):
    """The spans of one request (or of one agent step, a request made in process).

    Told of each attempt the way a :class:`~gateway.routing.dispatch.DispatchObserver` is:
    each attempt on a backend is a CLIENT span, started when the backend is chosen
    (``routed``) and ended when it fails (``attempt_failed``) or, for the attempt that
    answered, when the request ends (``finish``).
    """

    def routed(self, group: ModelGroup, backend: Backend, reason: str) -> None:
        """An attempt on ``backend`` starts (its CLIENT span)."""
        ...

    def attempt_failed(self, group: ModelGroup, backend: Backend, error: GatewayError) -> None:
        """The attempt on ``backend`` failed with ``error`` (its span ends as an error)."""
        ...

    def headers(self) -> Mapping[str, str]:
        """The trace context to send with the current attempt (``traceparent``,
        ``tracestate``): the upstream's spans become children of the attempt's."""
        ...

    def answered(self, data: bytes) -> None:
        """The upstream's answer: a whole body, or the tail of its stream (the response
        model is read from it)."""
        ...

    def finish(
        self,
        ctx: RequestContext,
        status: int,
        backend: str,
        prompt: int,
        completion: int,
        error: BaseException | None,
    ) -> None:
        """The request ended (exactly once): with the status the client got, the backend
        that answered (``none``, ``cache``, ``agent:<name>``...), the tokens used and the
        error, if any. Ends every span it still holds."""
        ...

    def run_started(self, agent: str) -> None:
        """A runner (agent, workflow, server-side tools) serves the request: its
        ``invoke_agent`` span starts, the parent of the run's steps and tool calls."""
        ...

    def run_ended(self, usage: RunUsage, stop_reason: str) -> None:
        """The run ended with ``usage`` and ``stop_reason`` (``error`` when it failed)."""
        ...

    def tool_called(self, tool: str, outcome: str, seconds: float) -> None:
        """A tool call of the run just ended (``ok`` or ``error``) after ``seconds``: its
        ``execute_tool`` span."""
        ...

    def step(self, info: StepInfo) -> RequestTrace:
        """The trace of step ``info`` of the run: its spans are children of the run's."""
        ...


class Tracer(Protocol):
    """Makes the traces of the app's requests; built when the app is (nothing runs yet), started
    and shut down by its lifespan."""

    def start(self) -> None:
        """Start exporting (the exporter's background thread), before the app serves."""
        ...

    def request(self, ctx: RequestContext) -> RequestTrace:
        """The trace of a client's request, continuing the client's ``traceparent`` if it
        sent one (``ctx.headers``)."""
        ...

    def flush(self) -> None:
        """Export every span ended so far (blocks until the exporter has them)."""
        ...

    def shutdown(self) -> None:
        """Flush, then stop exporting (blocks; called once, when the app stops)."""
        ...
