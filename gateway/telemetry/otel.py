"""OpenTelemetry traces of the gateway's requests: the :class:`~gateway.telemetry.tracing.Tracer`
built when ``tracing.enabled`` is on, and only then imported (the ``otel`` extra).

Spans, named and attributed by the OpenTelemetry HTTP and GenAI semantic conventions (the GenAI
ones are experimental; their strings are written out here, not taken from the library's
constants, which it marks deprecated):

- a SERVER span per client request, ``POST /v1/<endpoint>``, continuing the client's
  ``traceparent``: the model asked for, the model group, the backend that answered, the cache
  result, retries, tokens and cost (``gateway.*`` for the gateway's own facts);
- a CLIENT span per attempt on a backend, ``{gen_ai.operation.name} {gen_ai.request.model}``:
  the provider, the upstream's model (asked and answered), tokens, its address; the backend is
  sent its ``traceparent``, so what the backend records is a child of it;
- an INTERNAL ``invoke_agent {agent}`` span per run of an agent, workflow or server-side tools,
  the parent of its steps' CLIENT spans and of an ``execute_tool {tool}`` span per tool call.

Spans are created with explicit parents (never the ambient context): a stream is relayed by
whichever task reads it, so the context of the task that opened it is not at hand there.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import msgspec
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.agents.base import RunUsage
from gateway.config_loader import ConfigError
from gateway.errors import GatewayError, UpstreamStatusError
from gateway.pipeline.context import RequestContext, StepInfo
from gateway.plugins import Registries, build_registered
from gateway.routing.backends import Backend, ModelGroup
from gateway.settings_tracing import BatchSettings, TracingSettings
from gateway.sse import parse_event, split_events

# GenAI operation names of the client APIs (endpoint -> gen_ai.operation.name).
_OPERATIONS = {
    "chat/completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "messages": "chat",
    "responses": "chat",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _ModelOnly(msgspec.Struct):
    model: str | None = None


_model_decoder = msgspec.json.Decoder(_ModelOnly)


def response_model(data: bytes) -> str | None:
    """The ``model`` an upstream answered with: in a JSON body, or in the last event of a
    stream's tail that names one."""
    if data.startswith(b"{"):
        return _model_of(data)
    for block in reversed(split_events(data)):
        event = parse_event(block)
        if event is not None and event.data.startswith(b"{") and b'"model"' in event.data:
            return _model_of(event.data)
    return None


def _model_of(data: bytes) -> str | None:
    try:
        return _model_decoder.decode(data).model
    except msgspec.DecodeError:
        return None


def error_type(error: BaseException) -> str:
    """``error.type``: the upstream's status for a status error, else the error's class."""
    if isinstance(error, UpstreamStatusError):
        return str(error.upstream_status)
    return type(error).__name__


def _failed(span: Span, kind: str, message: str | None = None) -> None:
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, message))


class OtelTracer:
    """Satisfies :class:`~gateway.telemetry.tracing.Tracer` with the OpenTelemetry SDK.

    Attributes:
        provider: the tracer provider (not the process's global one: each app has its own).
        exporter: the exporter ``tracing.exporter`` built; spans reach it through a batch
            span processor once :meth:`start` has run.
        tracer: makes the spans.
        propagator: reads and writes W3C trace context (``traceparent``, ``tracestate``).
    """

    def __init__(
        self, provider: TracerProvider, exporter: SpanExporter, batch: BatchSettings
    ) -> None:
        self.provider = provider
        self.exporter = exporter
        self._batch = batch
        self.tracer = provider.get_tracer("gateway")
        self.propagator = TraceContextTextMapPropagator()
        self._servers: dict[str, tuple[str, int | None]] = {}

    @classmethod
    def build(cls, settings: TracingSettings, registries: Registries, source: str) -> OtelTracer:
        """The tracer of ``settings``, its exporter built (exporting starts with :meth:`start`).

        Raises:
            ConfigError: an unknown exporter, options it rejects, or batch bounds that do not
                fit together (naming the field).
        """
        batch = settings.batch
        if batch.max_export_batch_size > batch.max_queue_size:
            raise ConfigError(
                source,
                "tracing.batch.max_export_batch_size",
                f"must be at most `max_queue_size` ({batch.max_queue_size})",
            )
        choice = settings.exporter
        exporter: SpanExporter = build_registered(
            registries.span_exporters, choice.backend, choice.options, source, "tracing.exporter"
        )
        provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            resource=Resource.create({"service.name": settings.service_name}),
            shutdown_on_exit=False,  # the app's lifespan shuts it down, flushing
        )
        return cls(provider, exporter, batch)

    def request(self, ctx: RequestContext) -> OtelRequestTrace:
        route = f"/v1/{ctx.dialect.endpoint}"
        operation = _OPERATIONS.get(ctx.dialect.endpoint, "chat")
        span = self.tracer.start_span(
            f"POST {route}",
            context=self.propagator.extract(ctx.headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "POST",
                "http.route": route,
                "url.path": route,
                "gen_ai.operation.name": operation,
                "gateway.request_id": ctx.request_id,
            },
        )
        return OtelRequestTrace(self, operation, set_span_in_context(span), span)

    def server_of(self, url: str) -> tuple[str, int | None]:
        """``server.address`` and ``server.port`` of a backend's URL (parsed once)."""
        found = self._servers.get(url)
        if found is None:
            parts = urlsplit(url)
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
            found = self._servers[url] = (parts.hostname or url, port)
        return found

    def start(self) -> None:
        # The batch processor's thread starts with it: here, not when the app is built (a
        # `gateway check` starts nothing).
        batch = self._batch
        self.provider.add_span_processor(
            BatchSpanProcessor(
                self.exporter,
                max_queue_size=batch.max_queue_size,
                schedule_delay_millis=batch.schedule_delay_ms,
                max_export_batch_size=batch.max_export_batch_size,
                export_timeout_millis=batch.export_timeout_ms,
            )
        )

    def flush(self) -> None:
        self.provider.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()


class OtelRequestTrace:
    """Satisfies :class:`~gateway.telemetry.tracing.RequestTrace`: one request's spans (see
    the module docstring). A step's trace has no span of its own: its attempts are children
    of its run's span, and say which step they are."""

    __slots__ = (
        "_attempt",
        "_attempt_ns",
        "_attempts",
        "_context",
        "_ended",
        "_model",
        "_operation",
        "_owner",
        "_run",
        "_run_context",
        "_span",
        "_step",
    )

    def __init__(
        self,
        owner: OtelTracer,
        operation: str,
        context: Context,
        span: Span | None,
        step: StepInfo | None = None,
    ) -> None:
        self._owner = owner
        self._operation = operation  # its attempts' gen_ai.operation.name
        self._context = context  # the parent of this request's attempts and run
        self._span = span
        self._step = step
        self._attempt: Span | None = None
        self._attempt_ns = 0
        self._attempts = 0
        self._model: str | None = None
        self._run: Span | None = None
        self._run_context: Context | None = None
        self._ended = False

    def routed(self, group: ModelGroup, backend: Backend, reason: str) -> None:
        spec = backend.spec
        address, port = self._owner.server_of(spec.url)
        operation = self._operation
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": spec.provider or "unknown",
            "gen_ai.request.model": spec.model,
            "server.address": address,
            "gateway.backend": backend.name,
            "gateway.model_group": group.name,
            "gateway.routing.reason": reason,
        }
        if port is not None:
            attributes["server.port"] = port
        if self._attempts:
            attributes["http.request.resend_count"] = self._attempts
        if (step := self._step) is not None:
            attributes["gen_ai.agent.name"] = step.agent
            attributes["gateway.agent.step"] = step.number
        self._attempts += 1
        self._attempt_ns = time.time_ns()
        self._attempt = self._owner.tracer.start_span(
            f"{operation} {spec.model}",
            context=self._context,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=self._attempt_ns,
        )

    def attempt_failed(self, group: ModelGroup, backend: Backend, error: GatewayError) -> None:
        span, self._attempt = self._attempt, None
        if span is not None:
            _failed(span, error_type(error), error.message)
            span.end()

    def headers(self) -> Mapping[str, str]:
        carrier: dict[str, str] = {}
        parent = self._attempt
        context = set_span_in_context(parent) if parent is not None else self._context
        self._owner.propagator.inject(carrier, context=context)
        return carrier

    def answered(self, data: bytes) -> None:
        self._model = response_model(data)

    def finish(
        self,
        ctx: RequestContext,
        status: int,
        backend: str,
        prompt: int,
        completion: int,
        error: BaseException | None,
    ) -> None:
        if self._ended:
            return
        self._ended = True
        usage = {"gen_ai.usage.input_tokens": prompt, "gen_ai.usage.output_tokens": completion}
        if (attempt := self._attempt) is not None:
            self._attempt = None
            if prompt or completion:
                attempt.set_attributes(usage)
            if self._model:
                attempt.set_attribute("gen_ai.response.model", self._model)
            if status >= 500:  # a stream that failed once open, or an unreadable answer
                kind = error_type(error) if error is not None else str(status)
                _failed(attempt, kind, str(error) if error is not None else None)
            # A body's attempt ended when the upstream answered; a stream's ends with it (and
            # one cut short ends now).
            answered = not ctx.stream and ctx.upstream_s > 0
            attempt.end(end_time=self._attempt_ns + int(ctx.upstream_s * 1e9) if answered else None)
        if self._run is not None:  # the runner always ends its run; a failure may come first
            self._run.end()
            self._run = None
        span = self._span
        if span is None:
            return
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("gateway.backend", backend)
        span.set_attribute("gateway.cache.hit", ctx.served_from == "hit")
        if ctx.served_from is not None:
            span.set_attribute("gateway.served_from", ctx.served_from)
        span.set_attribute("gateway.retries", max(0, self._attempts - 1))
        if ctx.payload is not None:
            span.set_attribute("gen_ai.request.model", ctx.model)
        if ctx.group is not None:
            span.set_attribute("gateway.model_group", ctx.group.name)
        if prompt or completion:
            span.set_attributes(usage)
        if self._model:
            span.set_attribute("gen_ai.response.model", self._model)
        if ctx.cost_nanos:
            span.set_attribute("gateway.cost_usd", ctx.cost_nanos / 1e9)
        if status >= 500:
            code = error.code if isinstance(error, GatewayError) else None
            _failed(span, code or str(status), str(error) if error is not None else None)
        span.end()

    def run_started(self, agent: str) -> None:
        self._run = span = self._owner.tracer.start_span(
            f"invoke_agent {agent}",
            context=self._context,
            kind=SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent},
        )
        self._run_context = set_span_in_context(span)

    def run_ended(self, usage: RunUsage, stop_reason: str) -> None:
        span, self._run = self._run, None
        if span is None:
            return
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "gateway.agent.steps": usage.steps,
                "gateway.agent.tool_calls": usage.tool_calls,
                "gateway.agent.stop_reason": stop_reason,
                "gateway.cost_usd": usage.cost_nanos / 1e9,
            }
        )
        if stop_reason == "error":
            _failed(span, "agent_failed")
        span.end()

    def tool_called(self, tool: str, outcome: str, seconds: float) -> None:
        # Told once the call is over: its span is made with the times it had.
        now = time.time_ns()
        span = self._owner.tracer.start_span(
            f"execute_tool {tool}",
            context=self._run_context or self._context,
            kind=SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool},
            start_time=now - int(seconds * 1e9),
        )
        if outcome == "error":
            _failed(span, "tool_error")
        span.end(end_time=now)

    def step(self, info: StepInfo) -> OtelRequestTrace:
        # A step is a chat request, made in process.
        return OtelRequestTrace(self._owner, "chat", self._run_context or self._context, None, info)
