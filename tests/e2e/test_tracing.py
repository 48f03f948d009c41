"""OpenTelemetry traces, end to end: the gateway served on loopback with the simulator as its
backend and the official OpenAI SDK as its client, spans kept by the ``memory`` exporter
behind the real batch processor (flushed before they are read).

Checked: the request's SERVER span and its upstream call's CLIENT span (names, kinds,
parent and child, GenAI attributes with the token counts the client got), the client's
``traceparent`` and ``tracestate`` continued and forwarded (the simulator receives a
``traceparent`` whose parent is the CLIENT span), streams, a cache hit, an agent's run with its
steps and tool call, failed attempts as error spans, sampling, and OTLP export to a collector
on loopback, flushed when the gateway stops.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import gateway_otel
import openai
import pluggy
import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.plugins import make_plugin_manager
from gateway.telemetry.otel import OtelTracer
from tests.support.servers import (
    GatewayServer,
    Sim,
    eventually,
    group,
    running_gateway,
    running_sim,
)

ROOT = Path(__file__).resolve().parents[2]
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


def plugins() -> pluggy.PluginManager:
    """The gateway's plugins, ``gateway_otel`` among them (through its entry point)."""
    pm = make_plugin_manager()
    assert pm.get_plugin("otel") is gateway_otel
    return pm


def traced(sim: Sim, **tracing: Any) -> dict[str, Any]:
    return {
        "models": [group("chat", sim.url, retry={"attempts": 2, "backoff_ms": 1})],
        "tracing": {"enabled": True, "exporter": {"backend": "memory"}, **tracing},
    }


@contextmanager
def traced_gateway(config: dict[str, Any]) -> Iterator[GatewayServer]:
    with running_gateway(config, plugin_manager=plugins()) as gw:
        yield gw


def spans(gw: GatewayServer, at_least: int = 0) -> list[ReadableSpan]:
    """Every span the gateway has finished, in the order they ended, once there are
    ``at_least`` (a stream's end is accounted after its last byte reached the client)."""
    tracer = cast(OtelTracer, gw.state.tracing)
    exporter = cast(InMemorySpanExporter, tracer.exporter)

    def finished() -> list[ReadableSpan]:
        tracer.flush()
        return list(exporter.get_finished_spans())

    assert eventually(lambda: len(finished()) >= at_least), [s.name for s in finished()]
    return finished()


def named(found: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def only(found: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    matching = named(found, name)
    assert len(matching) == 1, [s.name for s in found]
    return matching[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def traceparent(trace_id: int, span_id: int, flags: int = 1) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def parsed(header: str) -> tuple[int, int, bool]:
    """A ``traceparent``'s trace id, parent span id and sampled flag."""
    version, trace_id, span_id, flags = header.split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16), bool(int(flags, 16) & 1)


def upstream_headers(sim: Sim) -> list[dict[str, str]]:
    return [r["headers"] for r in sim.stats()["recent"] if r["path"].startswith("/v1/")]


def client(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with running_sim() as s:
        yield s


def test_a_request_continues_the_clients_trace_to_the_backend(sim: Sim) -> None:
    trace_id, parent_id = secrets.randbits(128), secrets.randbits(64)
    with traced_gateway(traced(sim)) as gw, client(gw) as oai:
        answer = oai.chat.completions.create(
            model="chat",
            messages=USER,
            max_tokens=7,
            extra_headers={
                "traceparent": traceparent(trace_id, parent_id),
                "tracestate": "vendor=abc",
                "x-request-id": "traced-1",
            },
        )
        found = spans(gw, at_least=2)
    server = only(found, "POST /v1/chat/completions")
    call = only(found, "chat sim-model")
    assert server.kind is SpanKind.SERVER
    assert call.kind is SpanKind.CLIENT
    assert server.context is not None
    assert call.context is not None
    assert server.context.trace_id == trace_id == call.context.trace_id
    assert server.parent is not None
    assert server.parent.span_id == parent_id
    assert call.parent is not None
    assert call.parent.span_id == server.context.span_id
    assert answer.usage is not None
    usage = {
        "gen_ai.usage.input_tokens": answer.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": answer.usage.completion_tokens,
    }
    assert answer.usage.completion_tokens > 0
    reason = attrs(call)["gateway.routing.reason"]
    assert isinstance(reason, str)
    assert reason
    assert attrs(call) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": "sim-model",
        "gen_ai.response.model": answer.model,
        "server.address": "127.0.0.1",
        "server.port": int(sim.url.rsplit(":", 1)[1]),
        "gateway.backend": "chat-0",
        "gateway.model_group": "chat",
        "gateway.routing.reason": reason,
        **usage,
    }
    got = attrs(server)
    assert got["gen_ai.operation.name"] == "chat"
    assert got["gen_ai.request.model"] == "chat"
    assert got["gateway.model_group"] == "chat"
    assert got["gateway.backend"] == "chat-0"
    assert got["http.request.method"] == "POST"
    assert got["http.route"] == "/v1/chat/completions"
    assert got["http.response.status_code"] == 200
    assert got["gateway.cache.hit"] is False
    assert got["gateway.retries"] == 0
    assert got["gateway.request_id"] == "traced-1"
    assert {k: got[k] for k in usage} == usage
    assert server.status.status_code is StatusCode.UNSET
    # The backend saw the CLIENT span as its parent, and the client's tracestate.
    sent = upstream_headers(sim)[-1]
    assert parsed(sent["traceparent"]) == (trace_id, call.context.span_id, True)
    assert sent["tracestate"] == "vendor=abc"


def test_a_stream_is_traced_to_its_end_with_its_token_counts(sim: Sim) -> None:
    with traced_gateway(traced(sim)) as gw, client(gw) as oai:
        chunks = list(
            oai.chat.completions.create(
                model="chat",
                messages=USER,
                max_tokens=6,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        found = spans(gw, at_least=2)
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens > 0
    server = only(found, "POST /v1/chat/completions")
    call = only(found, "chat sim-model")
    assert server.parent is None  # no traceparent from the client: the trace starts here
    assert call.parent is not None
    assert server.context is not None
    assert call.parent.span_id == server.context.span_id
    for span in (server, call):
        assert attrs(span)["gen_ai.usage.input_tokens"] == usage.prompt_tokens
        assert attrs(span)["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attrs(call)["gen_ai.response.model"] == chunks[-1].model
    assert call.end_time is not None
    assert server.end_time is not None
    assert call.end_time <= server.end_time
    assert call.context is not None
    sent = upstream_headers(sim)[-1]
    assert parsed(sent["traceparent"]) == (call.context.trace_id, call.context.span_id, True)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_providers_on_vendor_sdks_forward_the_trace_context(sim: Sim, provider: str) -> None:
    backend = {"provider": provider, "url": sim.url, "model": "sim-model", "api_key": "sk-up"}
    config = traced(sim)
    config["models"] = [{"name": "cloud", "backends": [backend]}]
    with traced_gateway(config) as gw, client(gw) as oai:
        oai.chat.completions.create(model="cloud", messages=USER, max_tokens=3)
        found = spans(gw, at_least=2)
    call = only(found, "chat sim-model")
    assert attrs(call)["gen_ai.provider.name"] == provider
    assert call.context is not None
    sent = upstream_headers(sim)[-1]
    assert parsed(sent["traceparent"]) == (call.context.trace_id, call.context.span_id, True)


def test_a_cache_hit_has_no_upstream_call(sim: Sim) -> None:
    config = traced(sim)
    config["models"][0]["cache"] = {"enabled": True}
    with traced_gateway(config) as gw, client(gw) as oai:
        for _ in range(2):
            oai.chat.completions.create(model="chat", messages=USER, max_tokens=4, temperature=0)
        found = spans(gw, at_least=3)
    first, second = named(found, "POST /v1/chat/completions")
    assert attrs(first)["gateway.cache.hit"] is False
    assert attrs(second)["gateway.cache.hit"] is True
    assert attrs(second)["gateway.served_from"] == "hit"
    assert attrs(second)["gateway.backend"] == "hit"
    assert len(named(found, "chat sim-model")) == 1  # only the miss went upstream


def test_failed_attempts_are_error_spans_under_an_error_request() -> None:
    with running_sim() as failing:
        failing.set_faults(error_rates={"503": 1.0})
        with traced_gateway(traced(failing)) as gw, client(gw) as oai:
            with pytest.raises(openai.APIStatusError) as raised:
                oai.chat.completions.create(model="chat", messages=USER, max_tokens=4)
            found = spans(gw, at_least=3)
    assert raised.value.status_code == 503
    server = only(found, "POST /v1/chat/completions")
    attempts = named(found, "chat sim-model")
    assert len(attempts) == 2  # the group's `attempts: 2`
    assert server.context is not None
    for n, attempt in enumerate(attempts):
        assert attempt.kind is SpanKind.CLIENT
        assert attempt.parent is not None
        assert attempt.parent.span_id == server.context.span_id
        assert attempt.status.status_code is StatusCode.ERROR
        assert attrs(attempt)["error.type"] == "503"
        assert attrs(attempt).get("http.request.resend_count", 0) == n
    assert server.status.status_code is StatusCode.ERROR
    assert attrs(server)["http.response.status_code"] == 503
    assert attrs(server)["gateway.retries"] == 1
    assert "error.type" in attrs(server)


def test_a_stream_cut_by_its_backend_ends_its_spans_as_errors() -> None:
    with running_sim() as dropping:
        dropping.set_faults(drop_stream_after=2)
        with traced_gateway(traced(dropping)) as gw, client(gw) as oai:
            stream = oai.chat.completions.create(
                model="chat", messages=USER, max_tokens=20, stream=True
            )
            with pytest.raises(openai.APIError):
                list(stream)
            found = spans(gw, at_least=2)
    server = only(found, "POST /v1/chat/completions")
    call = only(found, "chat sim-model")
    assert call.status.status_code is StatusCode.ERROR
    assert server.status.status_code is StatusCode.ERROR
    assert attrs(server)["http.response.status_code"] == 502
    assert attrs(call)["error.type"] == "502"


def test_an_agent_run_is_a_span_over_its_steps_and_tool_call(sim: Sim) -> None:
    config = traced(sim)
    config["agents"] = [{"name": "helper", "model": "chat", "tools": ["calculator"]}]
    prompt = '[[tools: calculator {"expression": "6*7"}]] [[answer: done]]'
    with traced_gateway(config) as gw, client(gw) as oai:
        answer = oai.chat.completions.create(
            model="helper", messages=[{"role": "user", "content": prompt}]
        )
        found = spans(gw, at_least=5)
    server = only(found, "POST /v1/chat/completions")
    run = only(found, "invoke_agent helper")
    tool = only(found, "execute_tool calculator")
    steps = named(found, "chat sim-model")
    assert server.context is not None
    assert run.context is not None
    assert run.kind is SpanKind.INTERNAL
    assert tool.kind is SpanKind.INTERNAL
    assert run.parent is not None
    assert run.parent.span_id == server.context.span_id
    assert tool.parent is not None
    assert tool.parent.span_id == run.context.span_id
    assert [attrs(s)["gateway.agent.step"] for s in steps] == [1, 2]
    for step in steps:
        assert step.kind is SpanKind.CLIENT
        assert step.parent is not None
        assert step.parent.span_id == run.context.span_id
        assert attrs(step)["gen_ai.agent.name"] == "helper"
    assert attrs(tool)["gen_ai.operation.name"] == "execute_tool"
    assert attrs(tool)["gen_ai.tool.name"] == "calculator"
    assert tool.status.status_code is StatusCode.UNSET
    assert answer.usage is not None
    got = attrs(run)
    assert got["gen_ai.operation.name"] == "invoke_agent"
    assert got["gen_ai.agent.name"] == "helper"
    assert got["gateway.agent.steps"] == 2
    assert got["gateway.agent.tool_calls"] == 1
    assert got["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert got["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert sum(attrs(s)["gen_ai.usage.output_tokens"] for s in steps) == (
        answer.usage.completion_tokens
    )
    assert attrs(server)["gateway.backend"] == "agent:helper"
    # The tool ran between the two steps.
    assert steps[0].end_time is not None
    assert tool.start_time is not None
    assert steps[0].end_time <= tool.start_time
    assert tool.end_time is not None
    assert steps[1].start_time is not None
    assert tool.end_time <= steps[1].start_time


def test_a_trace_not_sampled_records_nothing_and_still_propagates(sim: Sim) -> None:
    with traced_gateway(traced(sim, sample_ratio=0.0)) as gw, client(gw) as oai:
        oai.chat.completions.create(model="chat", messages=USER, max_tokens=3)
        unsampled = spans(gw)
        sent = upstream_headers(sim)[-1]["traceparent"]
        # A client's sampled trace is recorded whatever the ratio (parent-based sampling).
        trace_id = secrets.randbits(128)
        oai.chat.completions.create(
            model="chat",
            messages=USER,
            max_tokens=3,
            extra_headers={"traceparent": traceparent(trace_id, secrets.randbits(64))},
        )
        sampled = spans(gw, at_least=2)
    assert unsampled == []
    assert parsed(sent)[2] is False  # the trace goes on upstream, marked not sampled
    assert {s.context.trace_id for s in sampled if s.context is not None} == {trace_id}
    assert len(sampled) == 2


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector: keeps each export request and its headers."""

    received: list[tuple[dict[str, str], ExportTraceServiceRequest]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, request))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def collector() -> Iterator[tuple[str, list[tuple[dict[str, str], ExportTraceServiceRequest]]]]:
    received: list[tuple[dict[str, str], ExportTraceServiceRequest]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_spans_are_exported_over_otlp_and_flushed_when_the_gateway_stops(sim: Sim) -> None:
    with collector() as (url, received):
        exporter = {
            "backend": "otlp",
            "options": {"endpoint": url, "headers": {"x-collector-token": "t0k"}},
        }
        # A batch that would wait a minute: only the shutdown's flush sends it in time.
        config = traced(
            sim, exporter=exporter, service_name="gw-test", batch={"schedule_delay_ms": 60000}
        )
        with traced_gateway(config) as gw, client(gw) as oai:
            oai.chat.completions.create(model="chat", messages=USER, max_tokens=3)
            assert received == []
        assert received, "the spans were not exported when the gateway stopped"
    headers, _ = received[0]
    assert headers["x-collector-token"] == "t0k"
    assert headers["content-type"] == "application/x-protobuf"
    names, services = set(), set()
    for _, request in received:
        for resource_spans in request.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    services.add(attr.value.string_value)
            for scope in resource_spans.scope_spans:
                names |= {s.name for s in scope.spans}
    assert services == {"gw-test"}
    assert names == {"POST /v1/chat/completions", "chat sim-model"}


# Served with tracing off (the default), the `otel` plugin loaded: a body, then a stream. Prints
# the modules that imported OpenTelemetry (some libraries do on their own when it is installed:
# the Anthropic SDK, redis-py), whether the gateway's tracer module was loaded, and then the
# importers once a tracer is built (the probe's control).
UNTRACED = """
import builtins, json, sys, urllib.request

importers = set()
real_import = builtins.__import__


def recording_import(name, globals=None, *args, **kwargs):
    importer = (globals or {}).get("__name__") or "?"
    if name.split(".")[0] == "opentelemetry" and not importer.startswith("opentelemetry"):
        importers.add(importer)
    return real_import(name, globals, *args, **kwargs)


builtins.__import__ = recording_import

import gateway_otel
from gateway.plugins import make_plugin_manager
from tests.support.servers import group, http_json, running_gateway, running_sim

pm = make_plugin_manager()
assert pm.get_plugin("otel") is gateway_otel
chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
with running_sim() as sim, running_gateway(
    {"models": [group("chat", sim.url)]}, plugin_manager=pm
) as gw:
    url = f"{gw.url}/v1/chat/completions"
    assert http_json("POST", url, chat)[0] == 200
    streamed = json.dumps({**chat, "stream": True}).encode()
    request = urllib.request.Request(url, streamed, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert b"[DONE]" in response.read()
untraced = sorted(importers)
loaded = "gateway.telemetry.otel" in sys.modules
# The probe's control: building a tracer is seen importing it.
from gateway.assembly import build_tracer
from gateway.config_loader import settings_from_mapping
from gateway.plugins import collect_registries

on = {"tracing": {"enabled": True, "exporter": {"backend": "memory"}}}
build_tracer(settings_from_mapping(on, "on"), collect_registries(pm)).shutdown()
print(json.dumps({"untraced": untraced, "loaded": loaded, "traced": sorted(importers)}))
"""


def test_with_tracing_off_the_gateway_imports_no_opentelemetry() -> None:
    done = subprocess.run(
        [sys.executable, "-c", UNTRACED],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])

    def ours(importers: list[str]) -> list[str]:
        return [m for m in importers if m.split(".")[0].startswith("gateway")]

    assert found["loaded"] is False
    assert ours(found["untraced"]) == [], "the gateway imported OpenTelemetry with tracing off"
    assert "gateway.telemetry.otel" in ours(found["traced"])


def test_a_streamed_agent_run_has_the_same_spans(sim: Sim) -> None:
    config = traced(sim)
    config["agents"] = [{"name": "helper", "model": "chat", "tools": ["calculator"]}]
    prompt = '[[tools: calculator {"expression": "6*7"}]] [[answer: done]]'
    with traced_gateway(config) as gw, client(gw) as oai:
        chunks = list(
            oai.chat.completions.create(
                model="helper",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        found = spans(gw, at_least=5)
    usage = chunks[-1].usage
    assert usage is not None
    server = only(found, "POST /v1/chat/completions")
    run = only(found, "invoke_agent helper")
    tool = only(found, "execute_tool calculator")
    steps = named(found, "chat sim-model")
    assert run.context is not None
    assert server.context is not None
    assert run.parent is not None
    assert run.parent.span_id == server.context.span_id
    assert [attrs(s)["gateway.agent.step"] for s in steps] == [1, 2]
    for child in (tool, *steps):
        assert child.parent is not None
        assert child.parent.span_id == run.context.span_id
    assert attrs(run)["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert sum(attrs(s)["gen_ai.usage.output_tokens"] for s in steps) == usage.completion_tokens
