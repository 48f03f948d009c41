"""Guardrails in the pipeline: requests rejected and rewritten before any backend sees them,
answers redacted or blocked (whole and mid-stream), on chat, Messages and agents.

Real parts: the simulator (``[[answer: ...]]`` makes its answer predictable) and the gateway
served on loopback; the official SDKs as clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.support.servers import GatewayServer, group, running_gateway, running_sim

GUARDRAILS = {
    "short": {"type": "max_input_chars", "options": {"max_chars": 200}},
    "no_secrets_in": {
        "type": "regex_block",
        "options": {"patterns": ["(?i)password"], "where": "request"},
    },
    "no_swordfish_out": {
        "type": "regex_block",
        "options": {"patterns": ["swordfish"], "where": "response"},
    },
    "pii_in": {"type": "pii_redact", "options": {"where": "request", "replacement": "<{label}>"}},
    "pii_out": {
        "type": "pii_redact",
        "options": {"where": "response", "replacement": "<{label}>"},
    },
}


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    with running_sim() as sim:
        config = {
            "guardrails": GUARDRAILS,
            "models": [
                group("plain", sim.url),
                group("guarded", sim.url, guardrails=["short", "no_secrets_in", "pii_in"]),
                group("redacted", sim.url, guardrails=["pii_out", "no_swordfish_out"]),
            ],
            "agents": [
                {
                    "name": "careful",
                    "model": "plain",
                    "tools": ["calculator"],
                    "guardrails": ["pii_out"],
                }
            ],
        }
        with running_gateway(config) as server:
            yield server


_CLIENTS: list[openai.OpenAI | anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """The SDK clients a test made are closed when it ends (no socket left to the collector)."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def oai(gw: GatewayServer) -> openai.OpenAI:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    _CLIENTS.append(client)
    return client


def claude(gw: GatewayServer) -> anthropic.Anthropic:
    client = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    _CLIENTS.append(client)
    return client


def say(gw: GatewayServer, model: str, text: str, **kwargs: Any) -> str:
    answer = oai(gw).chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs
    )
    return answer.choices[0].message.content or ""


def streamed(gw: GatewayServer, model: str, text: str) -> str:
    stream = oai(gw).chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def test_an_unguarded_group_is_untouched(gw: GatewayServer) -> None:
    assert say(gw, "plain", "[[answer: mail bob@example.com]]").startswith("mail bob@example.com")


def test_a_long_input_is_rejected_with_the_guardrail_named(gw: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        say(gw, "guarded", "x" * 500)
    assert caught.value.code == "guardrail_blocked"
    assert "short" in caught.value.message


def test_a_blocked_pattern_is_rejected_on_messages_too(gw: GatewayServer) -> None:
    client = claude(gw)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="guarded",
            max_tokens=50,
            messages=[{"role": "user", "content": "my Password is hunter2"}],
        )
    assert "no_secrets_in" in str(caught.value)


def test_a_guarded_group_refuses_an_endpoint_guardrails_cannot_check(gw: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai(gw).completions.create(model="guarded", prompt="mail bob@example.com")
    assert caught.value.code == "endpoint_not_guarded"


def test_pii_is_redacted_before_the_model_sees_it(gw: GatewayServer) -> None:
    # The simulated model answers with the text it received: redacted on the way in.
    answer = say(gw, "guarded", "[[answer: mail bob@example.com or call (555) 123-4567]]")
    assert answer.startswith("mail <email> or call <phone>"), answer
    assert "bob@example.com" not in answer


def test_pii_in_an_answer_is_redacted_whole_and_mid_stream(gw: GatewayServer) -> None:
    text = "[[answer: write to alice.smith@example.org, card 4111 1111 1111 1111, thanks]]"
    whole = say(gw, "redacted", text)
    assert whole.startswith("write to <email>, card <card>, thanks"), whole
    live = streamed(gw, "redacted", text)
    assert live == whole
    client = claude(gw)
    message = client.messages.create(
        model="redacted", max_tokens=100, messages=[{"role": "user", "content": text}]
    )
    assert "alice.smith@example.org" not in message.content[0].text  # type: ignore[union-attr]
    assert "<email>" in message.content[0].text  # type: ignore[union-attr]


def test_a_blocked_answer_fails_whole_and_mid_stream(gw: GatewayServer) -> None:
    text = "[[answer: the secret word is swordfish, tell no one]]"
    with pytest.raises(openai.BadRequestError) as caught:
        say(gw, "redacted", text)
    assert caught.value.code == "guardrail_blocked"
    with pytest.raises(openai.APIError):
        streamed(gw, "redacted", text)


def test_an_agents_answer_goes_through_its_guardrails(gw: GatewayServer) -> None:
    text = "[[answer: reach me at carol@example.net]]"
    assert "<email>" in say(gw, "careful", text)
    assert "carol@example.net" not in streamed(gw, "careful", text)
