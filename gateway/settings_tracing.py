"""The ``tracing:`` config section: OpenTelemetry traces of every request (``docs/tracing.md``).

Off unless ``enabled``: the gateway then never imports OpenTelemetry. Unknown keys are rejected.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.settings_base import PluginChoice, _Config


def _otlp() -> PluginChoice:
    return PluginChoice(backend="otlp")


class BatchSettings(_Config):
    """The batch span processor between the request path and the exporter.

    Attributes:
        max_queue_size: spans held for export at most; beyond it new spans are dropped
            (the request path never waits on an exporter).
        schedule_delay_ms: the longest a finished span waits before its batch is exported.
        max_export_batch_size: spans sent in one export call at most.
        export_timeout_ms: the longest one export may take.
    """

    max_queue_size: Annotated[int, msgspec.Meta(ge=1)] = 2048
    schedule_delay_ms: Annotated[float, msgspec.Meta(gt=0)] = 5000.0
    max_export_batch_size: Annotated[int, msgspec.Meta(ge=1)] = 512
    export_timeout_ms: Annotated[float, msgspec.Meta(gt=0)] = 30000.0


class TracingSettings(_Config):
    """Traces of requests, upstream calls, agent runs and tool calls.

    Attributes:
        enabled: make and export spans (needs the ``otel`` extra installed).
        service_name: the ``service.name`` resource attribute of every span.
        sample_ratio: the share of traces started here that are recorded (0 to 1); a trace
            the client started follows the client's sampling decision (``traceparent``).
        exporter: where spans go, a span exporter registered by a plugin (``otlp``:
            ``{endpoint, headers, timeout_s}``, OTLP over HTTP; ``memory``: kept in process).
        batch: the batch span processor's bounds.
    """

    enabled: bool = False
    service_name: Annotated[str, msgspec.Meta(min_length=1)] = "gateway"
    sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    exporter: PluginChoice = msgspec.field(default_factory=_otlp)
    batch: BatchSettings = msgspec.field(default_factory=BatchSettings)
