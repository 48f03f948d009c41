"""Every error status a client can see, as the OpenAI SDK sees it, in OpenAI's envelope."""

from __future__ import annotations

import socket
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from tests.support.servers import Sim, group, http_json, running_gateway
from tests.support.spec import validate

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def post(url: str, body: object, **headers: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, hdrs, payload = http_json("POST", f"{url}/v1/chat/completions", body, headers)
    validate("ErrorResponse", payload)
    return status, hdrs, payload


def test_invalid_json_is_400(gateway_url: str) -> None:
    status, _, body = post(gateway_url, b"{not json")
    assert status == 400
    assert body["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": USER}, "model"),
        ({"model": "chat"}, "messages"),
        ({"model": "chat", "messages": []}, "messages"),
        ({"model": 5, "messages": USER}, "model"),
        ({"model": "chat", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "chat", "messages": USER, "temperature": 7}, "temperature"),
        ({"model": "chat", "messages": USER, "max_tokens": "many"}, "max_tokens"),
        ({"model": "chat", "messages": USER, "stream": "yes"}, "stream"),
    ],
)
def test_invalid_field_is_400_naming_it(gateway_url: str, body: dict[str, Any], param: str) -> None:
    status, _, payload = post(gateway_url, body)
    assert status == 400
    assert payload["error"]["param"] == param
    assert param.split(".")[0].split("[")[0] in payload["error"]["message"]


def test_mixed_embedding_input_is_400(gateway_url: str) -> None:
    status, _, body = http_json(
        "POST", f"{gateway_url}/v1/embeddings", {"model": "chat", "input": ["a", 1]}
    )
    assert status == 400
    assert body["error"]["param"] == "input"


def test_sdk_raises_matching_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="nope", messages=USER)
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat", messages=USER, temperature=9)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_body_over_limit_is_413(sim: Sim) -> None:
    config = {"models": [group("chat", sim.url)], "server": {"max_body_bytes": 2048}}
    with running_gateway(config) as gw:
        big = {"model": "chat", "messages": [{"role": "user", "content": "x" * 5000}]}
        status, _, _body = post(gw.url, big)
        assert status == 413
        small = {"model": "chat", "messages": USER}
        assert http_json("POST", f"{gw.url}/v1/chat/completions", small)[0] == 200


@pytest.mark.parametrize(
    ("fault", "status", "exception"),
    [
        (400, 400, openai.BadRequestError),
        (401, 401, openai.AuthenticationError),
        (404, 404, openai.NotFoundError),
        (429, 429, openai.RateLimitError),
        (500, 502, openai.InternalServerError),
        (503, 503, openai.InternalServerError),
    ],
)
def test_upstream_status_passes_through(
    client: openai.OpenAI, sim: Sim, fault: int, status: int, exception: type[openai.APIStatusError]
) -> None:
    sim.set_faults(error_rates={fault: 1.0})
    with pytest.raises(exception) as raised:
        client.chat.completions.create(model="chat", messages=USER)
    assert raised.value.status_code == status
    assert f"Injected fault: status {fault}" in raised.value.message
    if fault == 429:
        assert raised.value.response.headers["retry-after"] == "1"
    with pytest.raises(exception):
        client.chat.completions.create(model="chat", messages=USER, stream=True)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_is_502() -> None:
    config = {"models": [group("chat", f"http://127.0.0.1:{_closed_port()}")]}
    with (
        running_gateway(config) as gw,
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client,
    ):
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="chat", messages=USER)
        assert raised.value.status_code == 502
        status, _, body = http_json("GET", f"{gw.url}/readyz")
        assert status == 503
        assert body["unavailable_models"] == ["chat"]
        assert http_json("GET", f"{gw.url}/health")[0] == 503  # vLLM's semantics: not ready


def test_refused_backend_fails_over_to_the_next(sim: Sim) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    config = {
        "models": [
            {
                "name": "chat",
                "backends": [
                    {"url": dead, "model": "sim-model"},
                    {"url": sim.url, "model": "sim-model"},
                ],
            }
        ]
    }
    with running_gateway(config) as gw:
        for _ in range(4):
            assert (
                http_json(
                    "POST", f"{gw.url}/v1/chat/completions", {"model": "chat", "messages": USER}
                )[0]
                == 200
            )
    assert sim.stats()["requests"]["chat"] == 4


def test_upstream_timeout_is_504(sim: Sim) -> None:
    sim.set_faults(delay_ms=3000)
    config = {"models": [group("chat", sim.url, timeouts={"first_byte": 0.3})]}
    with (
        running_gateway(config) as gw,
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client,
    ):
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model="chat", messages=USER)
        assert raised.value.status_code == 504
        assert raised.value.code == "upstream_timeout"


def test_a_stream_silent_past_the_idle_timeout_ends_with_an_error_event(sim: Sim) -> None:
    sim.set_faults(stall_rate=1.0, stall_ms=5000)
    timeouts = {"first_byte": 30, "idle": 0.3}
    config = {"models": [group("chat", sim.url, timeouts=timeouts)]}
    with (
        running_gateway(config) as gw,
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client,
    ):
        stream = client.chat.completions.create(
            model="chat", messages=USER, stream=True, max_tokens=20
        )
        received: list[ChatCompletionChunk] = []

        def read_all() -> None:
            received.extend(stream)

        with pytest.raises(openai.APIError) as raised:
            read_all()
        assert received  # the stream had started: the failure is an event, not a status
        assert "did not answer in time" in raised.value.message


def test_unknown_route_and_method(gateway_url: str) -> None:
    status, _, body = http_json("GET", f"{gateway_url}/v1/unknown")
    assert status == 404
    validate("ErrorResponse", body)
    # GET /v1/chat/completions lists stored completions; the other inference routes are POST only.
    status, _, body = http_json("GET", f"{gateway_url}/v1/embeddings")
    assert status == 405
    validate("ErrorResponse", body)
