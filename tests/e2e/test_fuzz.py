"""Property-based: whatever bytes a client sends to an inference route, the gateway answers a
4xx in the route's error format (or a 200), never a 500 and never a dropped connection, and it
is still healthy afterwards. A group's limits refuse exactly the requests over them.

One served gateway in front of a real simulator, with a plain group, a cached group (so the
cache stage decodes every body), a group with limits, a group behind the Anthropic provider
(the Chat-to-Messages translation), one routed by cost (the token estimate) and one that
batches embeddings. Requests are
written byte for byte on a raw connection, so bodies, framing and headers can lie.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.servers import group, http_json, running_gateway, running_sim
from tests.support.spec import validate

MAX_BODY = 16 * 1024  # small, yet room for a few thousand `[` under it
LIMITS = {"max_tokens": 16, "max_n": 2, "max_inputs": 2, "max_dimensions": 8}
MODELS = [
    "chat",
    "cached",
    "limited",
    "claude",
    "costly",
    "batched",
    "agent",
    "guarded",
    "workflow",
    "unknown-model",
]
USER = [{"role": "user", "content": "hi"}]
ROUTES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": USER, "temperature": 0, "max_tokens": 4},
    "/v1/completions": {"prompt": "hi", "temperature": 0, "max_tokens": 4},
    "/v1/embeddings": {"input": "hi"},
    "/v1/messages": {"messages": USER, "max_tokens": 4},
    "/v1/messages/count_tokens": {"messages": USER},
    "/v1/responses": {"input": "hi", "temperature": 0, "max_output_tokens": 4},
}
FIELDS = [
    "model", "messages", "prompt", "input", "max_tokens", "max_completion_tokens", "n",
    "dimensions", "stream", "stream_options", "temperature", "tools", "tool_choice",
    "response_format", "system", "metadata", "stop", "logit_bias", "seed", "cache_control",
    "encoding_format", "unknown_field",
]  # fmt: skip
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with running_sim() as sim:
        claude = {"provider": "anthropic", "url": sim.url, "model": "sim-model", "api_key": "k"}
        config = {
            "server": {"max_body_bytes": MAX_BODY},
            "store": {"backend": "sqlite", "options": {"path": ":memory:"}},
            "models": [
                group("chat", sim.url),
                group("cached", sim.url, cache={"enabled": True, "deterministic_only": False}),
                group("limited", sim.url, limits=LIMITS),
                {"name": "claude", "backends": [claude]},
                group("costly", sim.url, sim.url, routing={"strategy": "cost"}),
                group("batched", sim.url, batching={"enabled": True, "max_wait_ms": 1}),
                group("guarded", sim.url, guardrails=["pii", "short"], tools="server"),
            ],
            "guardrails": {
                "pii": {"type": "pii_redact"},
                "short": {"type": "max_input_chars", "options": {"max_chars": 5000}},
            },
            "agents": [
                {
                    "name": "agent",
                    "model": "chat",
                    "tools": ["calculator", "current_time"],
                    "max_steps": 3,
                }
            ],
            "workflows": [{"name": "workflow", "steps": [{"agent": "agent"}], "max_steps": 4}],
        }
        with running_gateway(config) as gw:
            yield gw.url


# ------------------------------------------------------------------------------ the requests


@dataclass
class Exchange:
    """One request as bytes, and what it is allowed to get back besides an envelope."""

    path: str
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # The framing lies (content-length, odd header bytes): uvicorn may answer its own plain-text
    # 400 before the gateway sees the request.
    framing: bool = False
    # The body is shorter than its content-length and the client stops writing: the server sees
    # the client leave, and there is no one to answer.
    hangs_up: bool = False
    method: bytes = b"POST"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(url: str, ex: Exchange) -> Answer | None:
    """Send ``ex`` exactly as given; None when the server closed without answering."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.putrequest(ex.method.decode(), ex.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", f"{host}:{port}")
        conn.putheader("connection", "close")
        for name, value in ex.headers:
            conn.putheader(name, value)
        try:
            conn.endheaders()
            conn.send(ex.body)
            if ex.hangs_up:
                assert conn.sock is not None
                conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered (413) and closed before reading it all: read the answer
        try:
            resp = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def deep(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def encode(body: object) -> bytes:
    # Floats may be NaN or infinite: json writes those, and they are not JSON, as intended.
    return json.dumps(body).encode()


depths = st.integers(400, 1100) | st.sampled_from([100, 3000, 7000])


@st.composite
def nested_bodies(draw: st.DrawFn, body: dict[str, Any]) -> bytes:
    """``body`` with a deeply nested value where the gateway may walk it: any field, message
    content, Anthropic's system and tools, or tool-call arguments (JSON in a string, which the
    Chat-to-Messages translation decodes)."""
    nested = deep(draw(depths), draw(st.sampled_from(["list", "dict"])))
    where = draw(st.sampled_from(["field", "content", "tool_arguments", "system", "tools"]))
    if where == "field":
        body[draw(st.sampled_from(FIELDS))] = "NESTED"
    elif where == "content":
        body["messages"] = [
            {"role": "user", "content": [{"type": "text", "text": "a", "x": "NESTED"}]}
        ]
    elif where == "tool_arguments":
        body["messages"] = [
            *USER,
            {"role": "assistant", "tool_calls": [
                {"id": "1", "function": {"name": "f", "arguments": '{"a":' + nested + "}"}}
            ]},
        ]  # fmt: skip
    elif where == "system":
        body["system"] = [{"type": "text", "text": "s", "x": "NESTED"}]
    else:
        body["tools"] = [{"name": "t", "input_schema": {"a": "NESTED"}}]
    return encode(body).replace(b'"NESTED"', nested.encode())


@st.composite
def bodies(draw: st.DrawFn, path: str) -> tuple[bytes, bool]:
    """A body for ``path``, made wrong in one of several ways; and whether it is a framing lie."""
    body = {"model": draw(st.sampled_from(MODELS)), **ROUTES[path]}
    how = draw(
        st.sampled_from(
            [
                "valid", "wrong_type", "drop_field", "deep", "deep_top", "truncate", "garbage",
                "oversize", "not_object", "bad_utf8",
            ]
        )
    )  # fmt: skip
    if how == "wrong_type":
        body[draw(st.sampled_from(FIELDS))] = draw(json_values)
    elif how == "drop_field":
        body.pop(draw(st.sampled_from(sorted(body))))
    elif how == "deep":
        return draw(nested_bodies(body)), False
    elif how == "deep_top":
        return deep(draw(depths), draw(st.sampled_from(["list", "dict"]))).encode(), False
    elif how == "truncate":
        data = encode(body)
        return data[: draw(st.integers(0, len(data) - 1))], False
    elif how == "garbage":
        return draw(st.binary(max_size=64)), False
    elif how == "oversize":
        body["padding"] = "x" * draw(st.integers(MAX_BODY, 2 * MAX_BODY))
    elif how == "not_object":
        return encode(draw(json_values)), False
    elif how == "bad_utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]))
        if draw(st.booleans()):  # in a field the validating decoder skips
            body["unknown_field"] = "BAD"
            return encode(body).replace(b'"BAD"', b'"' + bad + b'"'), False
        data = encode(body)
        at = draw(st.integers(0, len(data)))
        return data[:at] + bad + data[at:], False
    if draw(st.booleans()) and path not in ("/v1/embeddings", "/v1/messages/count_tokens"):
        body["stream"] = True
    return encode(body), False


CONTENT_TYPES = [
    b"application/json", b"text/plain", b"", b"application/json; charset=utf-16",
    b"multipart/form-data; boundary=x", b"application/x-www-form-urlencoded", b"\xff\xfe;;",
]  # fmt: skip


@st.composite
def exchanges(draw: st.DrawFn) -> Exchange:
    path = draw(st.sampled_from(sorted(ROUTES)))
    body, framing = draw(bodies(path))
    ex = Exchange(path, body, framing=framing)
    if draw(st.booleans()):
        ex.headers.append((b"content-type", draw(st.sampled_from(CONTENT_TYPES))))
    length = draw(
        st.sampled_from(
            ["exact", "exact", "exact", "short", "long", "huge", "junk", "none", "chunked"]
        )
    )
    if length == "exact":
        ex.headers.append((b"content-length", str(len(body)).encode()))
    elif length == "short" and body:
        ex.headers.append((b"content-length", str(draw(st.integers(0, len(body) - 1))).encode()))
        ex.framing = True  # the rest of the body reads as a broken next request
    elif length == "long":
        ex.headers.append((b"content-length", str(len(body) + draw(st.integers(1, 100))).encode()))
        ex.hangs_up = True
    elif length == "huge":
        ex.headers.append((b"content-length", str(MAX_BODY * 1000).encode()))
        ex.hangs_up = True
    elif length == "junk":
        ex.headers.append(
            (
                b"content-length",
                draw(st.sampled_from([b"abc", b"-1", b"1e3", b" 12", b"0x10", b"1, 2"])),
            )
        )
        ex.framing = True
        ex.hangs_up = True  # a length the parser does read (" 12") is waited for
    elif length == "chunked":
        ex.headers.append((b"transfer-encoding", b"chunked"))
        ex.body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    else:
        ex.body = b""  # no length: no body at all
    if draw(st.booleans()):
        name = draw(
            st.sampled_from(
                [b"x-request-id", b"authorization", b"x-api-key", b"cache-control", b"x-odd"]
            )
        )
        value = draw(
            st.binary(min_size=1, max_size=40).filter(lambda v: b"\r" not in v and b"\n" not in v)
        )
        ex.headers.append((name, value))
        ex.framing = True  # uvicorn may refuse control bytes itself
    return ex


# ------------------------------------------------------------------------------ the checks


def assert_error_envelope(path: str, answer: Answer) -> None:
    payload = json.loads(answer.body)
    if path.startswith("/v1/messages"):
        assert payload["type"] == "error", payload
        assert set(payload["error"]) == {"type", "message"}, payload
        assert isinstance(payload["error"]["type"], str), payload
        assert isinstance(payload["error"]["message"], str), payload
    else:
        validate("ErrorResponse", payload)
    assert answer.headers.get("x-request-id"), answer.headers


def check(ex: Exchange, answer: Answer | None) -> None:
    if answer is None:
        assert ex.hangs_up, f"the connection dropped without an answer: {ex}"
        return
    # No 5xx at all: neither the gateway nor (relayed) the simulator fails on a client's body.
    assert answer.status < 500, (ex, answer)
    if answer.status < 400:
        return
    from_uvicorn = "x-request-id" not in answer.headers and answer.headers.get(
        "content-type", ""
    ).startswith("text/plain")
    if from_uvicorn:  # a request uvicorn could not parse never reached the gateway
        assert ex.framing, (ex, answer)
        assert answer.status == 400, (ex, answer)
        return
    assert_error_envelope(ex.path, answer)


@pytest.fixture
def no_unhandled_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR, logger="gateway")
    yield
    unhandled = [r for r in caplog.records if "unhandled error" in r.getMessage()]
    assert not unhandled, [r.getMessage() for r in unhandled]


@FUZZ
@given(ex=exchanges())
def test_any_body_gets_an_error_envelope_never_a_500(
    gateway: str, no_unhandled_errors: None, ex: Exchange
) -> None:
    check(ex, exchange(gateway, ex))


@settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(path=st.sampled_from(sorted(ROUTES)), model=st.sampled_from(MODELS), data=st.data())
def test_deeply_nested_bodies_get_an_error_envelope(
    gateway: str, no_unhandled_errors: None, path: str, model: str, data: st.DataObject
) -> None:
    body = data.draw(nested_bodies({"model": model, **ROUTES[path]}))
    ex = Exchange(path, body, [(b"content-length", str(len(body)).encode())])
    check(ex, exchange(gateway, ex))


def test_deep_nesting_at_every_depth_is_a_4xx(gateway: str) -> None:
    """The decoder's depth limit is what is left of the recursion limit where it runs, so the
    depths around it are tried one by one, in every route and the places that walk the body."""
    for path, base in ROUTES.items():
        for model in ("cached", "costly", "claude", "batched"):
            for depth in range(880, 1000, 7):
                body = {**base, "model": model, "x": "NESTED"}
                if "messages" in base:
                    body["messages"] = [
                        {"role": "user", "content": [{"type": "text", "text": "a", "x": "NESTED"}]}
                    ]
                data = encode(body).replace(b'"NESTED"', deep(depth, "list").encode())
                ex = Exchange(path, data, [(b"content-length", str(len(data)).encode())])
                check(ex, exchange(gateway, ex))


# ------------------------------------------------------------------------------ the limits


@st.composite
def limited_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any], str | None]:
    """A valid request to the limited group, and the field over a ceiling that it should be
    refused for (the first checked), or None."""
    path = draw(
        st.sampled_from(
            ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages"]
        )
    )
    body: dict[str, Any] = {"model": "limited", **ROUTES[path]}
    over: list[str] = []
    sizes = st.integers(1, 40)
    if path != "/v1/embeddings":
        body["max_tokens"] = tokens = draw(sizes)
        if tokens > LIMITS["max_tokens"]:
            over.append("max_tokens")
    if path == "/v1/chat/completions" and draw(st.booleans()):
        body["max_completion_tokens"] = tokens = draw(sizes)
        if tokens > LIMITS["max_tokens"]:
            over.append("max_completion_tokens")
    if path in ("/v1/chat/completions", "/v1/completions") and draw(st.booleans()):
        body["n"] = n = draw(st.integers(1, 5))
        if n > LIMITS["max_n"]:
            over.append("n")
    if path in ("/v1/completions", "/v1/embeddings"):
        name = "prompt" if path == "/v1/completions" else "input"
        kind = draw(st.sampled_from(["text", "texts", "tokens", "token_lists"]))
        count = draw(st.integers(1, 4))
        body[name] = {
            "text": "hi",
            "texts": ["hi"] * count,
            "tokens": [1] * count,
            "token_lists": [[1, 2]] * count,
        }[kind]
        if kind in ("texts", "token_lists") and count > LIMITS["max_inputs"]:
            over.append(name)
    if path == "/v1/embeddings" and draw(st.booleans()):
        body["dimensions"] = dims = draw(st.integers(1, 12))
        if dims > LIMITS["max_dimensions"]:
            over.append("dimensions")
    if path != "/v1/embeddings" and draw(st.booleans()):
        body["stream"] = True
    return path, body, over[0] if over else None


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(case=limited_requests())
def test_a_groups_limits_refuse_exactly_the_requests_over_them(
    gateway: str, case: tuple[str, dict[str, Any], str | None]
) -> None:
    path, body, param = case
    data = encode(body)
    ex = Exchange(path, data, [(b"content-length", str(len(data)).encode())])
    answer = exchange(gateway, ex)
    assert answer is not None
    if param is None:
        assert answer.status == 200, (body, answer)
        return
    assert answer.status == 400, (body, answer)
    assert_error_envelope(path, answer)
    error = json.loads(answer.body)["error"]
    if path.startswith("/v1/messages"):
        assert error["message"].startswith(f"{param}:"), error
    else:
        assert (error["param"], error["code"]) == (param, "limit_exceeded"), error


def test_still_healthy_afterwards(gateway: str) -> None:
    status, _, body = http_json("GET", f"{gateway}/healthz")
    assert status == 200, body
    ok = {"model": "chat", "messages": USER, "max_tokens": 4}
    assert http_json("POST", f"{gateway}/v1/chat/completions", ok)[0] == 200
