"""The ``tracing:`` section: off by default, and every mistake a config error naming its field."""

from __future__ import annotations

from typing import Any

import gateway_otel
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.assembly import build_tracer
from gateway.config_loader import ConfigError, settings_from_mapping
from gateway.plugins import Registries, collect_registries, make_plugin_manager
from gateway.telemetry.otel import OtelTracer


@pytest.fixture(scope="module")
def registries() -> Registries:
    pm = make_plugin_manager(entry_points=False, extra=[("otel", gateway_otel)])
    return collect_registries(pm)


def tracer_of(tracing: dict[str, Any], registries: Registries) -> OtelTracer | None:
    settings = settings_from_mapping({"tracing": tracing}, "gateway.yaml")
    tracer = build_tracer(settings, registries)
    assert tracer is None or isinstance(tracer, OtelTracer)
    return tracer


def error_of(tracing: dict[str, Any], registries: Registries) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        tracer_of(tracing, registries)
    assert raised.value.source == "gateway.yaml"
    return raised.value


def test_tracing_is_off_unless_enabled(registries: Registries) -> None:
    assert settings_from_mapping({}, "gateway.yaml").tracing.enabled is False
    assert tracer_of({"exporter": {"backend": "memory"}}, registries) is None


def test_the_exporters_are_built_with_their_options(registries: Registries) -> None:
    memory = tracer_of({"enabled": True, "exporter": {"backend": "memory"}}, registries)
    assert memory is not None
    assert isinstance(memory.exporter, InMemorySpanExporter)
    memory.shutdown()
    options = {
        "endpoint": "https://collector.example:4318/v1/traces",
        "headers": {"authorization": "Bearer t"},
        "timeout_s": 3,
        "compression": "gzip",
    }
    exporter = {"backend": "otlp", "options": options}
    otlp = tracer_of({"enabled": True, "exporter": exporter}, registries)
    assert otlp is not None
    assert isinstance(otlp.exporter, OTLPSpanExporter)
    otlp.shutdown()  # nothing was recorded: nothing is sent


@pytest.mark.parametrize(
    ("tracing", "field", "problem"),
    [
        ({"exporter": {"backend": "zipkin"}}, "tracing.exporter.backend", "memory, otlp"),
        (
            {"exporter": {"backend": "otlp", "options": {"endpoint": "collector:4318"}}},
            "tracing.exporter.options",
            "`endpoint` must be an http(s) URL",
        ),
        (
            {"exporter": {"backend": "otlp", "options": {"headers": {"x-token": 7}}}},
            "tracing.exporter.options",
            "`headers`",
        ),
        (
            {"exporter": {"backend": "otlp", "options": {"timeout_s": 0}}},
            "tracing.exporter.options",
            "`timeout_s`",
        ),
        (
            {"exporter": {"backend": "otlp", "options": {"compression": "brotli"}}},
            "tracing.exporter.options",
            "`compression`",
        ),
        (
            {"exporter": {"backend": "otlp", "options": {"endpiont": "http://c:4318"}}},
            "tracing.exporter.options",
            "endpiont",
        ),
        (
            {"batch": {"max_queue_size": 10, "max_export_batch_size": 20}},
            "tracing.batch.max_export_batch_size",
            "at most `max_queue_size` (10)",
        ),
    ],
)
def test_a_bad_exporter_or_batch_names_its_field(
    registries: Registries, tracing: dict[str, Any], field: str, problem: str
) -> None:
    error = error_of({"enabled": True, **tracing}, registries)
    assert error.field == field
    assert problem in error.problem


@pytest.mark.parametrize(
    ("tracing", "field"),
    [
        ({"sample_ratio": 1.5}, "tracing.sample_ratio"),
        ({"service_name": ""}, "tracing.service_name"),
        ({"batch": {"schedule_delay_ms": 0}}, "tracing.batch.schedule_delay_ms"),
        ({"endpoint": "http://c:4318"}, "tracing.endpoint"),
    ],
)
def test_a_bad_value_is_rejected_when_the_file_is_read(tracing: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_from_mapping({"tracing": tracing}, "gateway.yaml")
    assert raised.value.field == field
