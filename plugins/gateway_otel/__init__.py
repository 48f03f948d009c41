"""Built-in plugin: the span exporters ``otlp`` (OTLP over HTTP/protobuf) and ``memory``.

Both import OpenTelemetry when they are built, never when the plugin is loaded: with tracing
off the gateway imports none of it (``docs/tracing.md``).

``otlp`` options (each falls back to OpenTelemetry's ``OTEL_EXPORTER_OTLP_*`` environment
variables, then to its defaults: ``http://localhost:4318/v1/traces``, 10 s):

- ``endpoint``: the collector's full traces URL (``http(s)://host:4318/v1/traces``);
- ``headers``: sent with every export (``authorization`` for a hosted collector);
- ``timeout_s``: the longest one export may take;
- ``compression``: ``gzip`` or ``none``.

``memory`` keeps finished spans in the process (``InMemorySpanExporter``): for tests and
embedding, read through ``GatewayState.tracing.exporter``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway import hookimpl
from gateway.hookspecs import RegisterSpanExporter

if TYPE_CHECKING:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_COMPRESSIONS = ("gzip", "none")


def otlp_exporter(
    endpoint: str | None = None,
    headers: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
    compression: str = "none",
) -> OTLPSpanExporter:
    """The OTLP/HTTP exporter (see the module docstring).

    Raises:
        ValueError: an option of the wrong kind, naming it.
    """
    if endpoint is not None and (
        not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://"))
    ):
        raise ValueError(f"`endpoint` must be an http(s) URL, got {endpoint!r}")
    if headers is not None and not (
        isinstance(headers, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise ValueError("`headers` must map header names to strings")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0
    ):
        raise ValueError(f"`timeout_s` must be a positive number, got {timeout_s!r}")
    if compression not in _COMPRESSIONS:
        raise ValueError(f"`compression` must be one of {', '.join(_COMPRESSIONS)}")
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=endpoint,
        headers=dict(headers) if headers is not None else None,
        timeout=timeout_s,
        compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression,
    )


def memory_exporter() -> InMemorySpanExporter:
    """An exporter that keeps every finished span in the process."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@hookimpl
def register_span_exporters(register: RegisterSpanExporter) -> None:
    register("otlp", otlp_exporter)
    register("memory", memory_exporter)
