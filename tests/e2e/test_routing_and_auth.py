"""Round robin across replicas, and API-key authentication."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import gateway
from tests.support.servers import group, http_json, running_gateway, running_sim

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def test_round_robin_spreads_evenly_across_replicas() -> None:
    with running_sim() as a, running_sim() as b, running_sim() as c:
        with (
            running_gateway({"models": [group("chat", a.url, b.url, c.url)]}) as gw,
            openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client,
        ):
            backends = []
            for _ in range(9):
                raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
                backends.append(raw.headers["x-gateway-backend"])
        assert [s.stats()["requests"]["chat"] for s in (a, b, c)] == [3, 3, 3]
        assert backends[:3] == ["chat-0", "chat-1", "chat-2"]


@pytest.fixture
def secured_url() -> object:
    with running_sim() as sim:
        config = {
            "models": [group("chat", sim.url)],
            "auth": {"api_keys": ["sk-one", "sk-two"], "master_key": "sk-master"},
        }
        with running_gateway(config) as gw:
            yield gw.url


def test_auth_accepts_configured_keys_only(secured_url: str) -> None:
    for key in ("sk-one", "sk-two", "sk-master"):
        with openai.OpenAI(base_url=f"{secured_url}/v1", api_key=key, max_retries=0) as client:
            assert client.chat.completions.create(model="chat", messages=USER).choices
            assert [m.id for m in client.models.list()] == ["chat"]
    with openai.OpenAI(base_url=f"{secured_url}/v1", api_key="sk-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="chat", messages=USER)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()


def test_auth_missing_header_is_401_but_probes_stay_open(secured_url: str) -> None:
    status, _, body = http_json(
        "POST", f"{secured_url}/v1/chat/completions", {"model": "chat", "messages": USER}
    )
    assert status == 401
    assert body["error"]["type"] == "authentication_error"
    status, _, _ = http_json(
        "POST",
        f"{secured_url}/v1/chat/completions",
        {"model": "chat", "messages": USER},
        {"authorization": "Basic sk-one"},
    )
    assert status == 401
    assert http_json("GET", f"{secured_url}/healthz")[0] == 200
    assert http_json("GET", f"{secured_url}/readyz")[0] == 200
    # vLLM-ecosystem clients check /health (and read /version) before any load, without a key.
    assert http_json("GET", f"{secured_url}/health")[0] == 200
    status, _, body = http_json("GET", f"{secured_url}/version")
    assert status == 200
    assert body["version"] == gateway.__version__
