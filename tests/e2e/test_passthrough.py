"""What the client sent reaches the upstream: extra fields, request ids; model names are mapped."""

from __future__ import annotations

import openai
from openai.types.chat import ChatCompletionMessageParam

from tests.support.servers import Sim, group, http_json, running_gateway

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def test_extra_fields_reach_the_upstream_untouched(client: openai.OpenAI, sim: Sim) -> None:
    extra = {"top_k": 5, "cache_salt": "tenant-a", "priority": -1, "vendor_x": {"a": [1, 2]}}
    client.chat.completions.create(model="chat", messages=USER, extra_body=extra)
    received = sim.stats()["recent"][-1]["body"]
    for key, value in extra.items():
        assert received[key] == value


def test_extras_survive_model_renaming(sim: Sim) -> None:
    config = {"models": [group("public-name", sim.url, model="sim-model")]}
    with running_gateway(config) as gw:
        body = {"model": "public-name", "messages": USER, "top_k": 3, "repetition_penalty": 1.1}
        assert http_json("POST", f"{gw.url}/v1/chat/completions", body)[0] == 200
    received = sim.stats()["recent"][-1]["body"]
    assert received["model"] == "sim-model"
    assert received["top_k"] == 3
    assert received["repetition_penalty"] == 1.1


def test_request_id_is_kept_returned_and_forwarded(gateway_url: str, sim: Sim) -> None:
    status, headers, _ = http_json(
        "POST",
        f"{gateway_url}/v1/chat/completions",
        {"model": "chat", "messages": USER},
        {"x-request-id": "client-id-123"},
    )
    assert status == 200
    assert headers["x-request-id"] == "client-id-123"
    assert sim.stats()["recent"][-1]["headers"]["x-request-id"] == "client-id-123"
    assert float(headers["x-gateway-overhead-ms"]) >= 0


def test_request_id_is_generated_when_absent_or_malformed(gateway_url: str, sim: Sim) -> None:
    _, headers, _ = http_json(
        "POST",
        f"{gateway_url}/v1/chat/completions",
        {"model": "chat", "messages": USER},
        {"x-request-id": "bad id!\t"},
    )
    generated = headers["x-request-id"]
    assert generated != "bad id!\t"
    assert sim.stats()["recent"][-1]["headers"]["x-request-id"] == generated
    status, headers, _ = http_json("POST", f"{gateway_url}/v1/chat/completions", {"model": 1})
    assert status == 400
    assert headers["x-request-id"]
