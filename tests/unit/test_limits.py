"""A model group's ceilings (``models[].limits``): the checks, their settings and the intake."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from litestar.types import HTTPRequestEvent, HTTPScope

from gateway.assembly import build_state
from gateway.config_loader import ConfigError, settings_from_mapping
from gateway.errors import InvalidRequestError, anthropic_error_json
from gateway.pipeline.context import Dialect
from gateway.pipeline.limits import check_limits, count_inputs
from gateway.pipeline.pipeline import Pipeline
from gateway.routes.anthropic import COUNT_TOKENS, MESSAGES
from gateway.routes.calls import Call
from gateway.routes.openai import CHAT, COMPLETIONS, EMBEDDINGS
from gateway.routes.openai_responses import RESPONSES
from gateway.settings import LimitSettings
from gateway.testing import plugin_manager

LIMITS = LimitSettings(max_tokens=100, max_n=2, max_inputs=3, max_dimensions=256)
USER = [{"role": "user", "content": "hi"}]


def payload(dialect: Dialect, **fields: Any) -> Any:
    return dialect.decode(json.dumps({"model": "m", **fields}).encode())


def chat(**fields: Any) -> Any:
    return payload(CHAT, messages=USER, **fields)


def completion(**fields: Any) -> Any:
    return payload(COMPLETIONS, **fields)


def embedding(**fields: Any) -> Any:
    return payload(EMBEDDINGS, **fields)


def message(**fields: Any) -> Any:
    return payload(MESSAGES, messages=USER, **fields)


@pytest.mark.parametrize(
    ("request_payload", "param"),
    [
        (chat(max_tokens=101), "max_tokens"),
        (chat(max_completion_tokens=101), "max_completion_tokens"),
        (chat(max_tokens=10, max_completion_tokens=5000), "max_completion_tokens"),
        (chat(n=3), "n"),
        (payload(RESPONSES, input="hi", max_output_tokens=101), "max_output_tokens"),
        (completion(prompt="x", max_tokens=101), "max_tokens"),
        (completion(prompt="x", n=3), "n"),
        (completion(prompt=["a", "b", "c", "d"]), "prompt"),
        (completion(prompt=[[1], [2], [3], [4]]), "prompt"),
        (embedding(input=["a", "b", "c", "d"]), "input"),
        (embedding(input=[[1, 2], [3], [4], [5]]), "input"),
        (embedding(input="x", dimensions=257), "dimensions"),
        (message(max_tokens=101), "max_tokens"),
    ],
)
def test_over_a_ceiling_is_400_naming_the_field(request_payload: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        check_limits(LIMITS, request_payload, "m")
    error = raised.value
    assert (error.status, error.param, error.code) == (400, param, "limit_exceeded")
    assert error.message.startswith(f"{param}:")
    assert "`m`" in error.message


@pytest.mark.parametrize(
    "request_payload",
    [
        chat(),
        chat(max_tokens=100, max_completion_tokens=100, n=2),
        completion(prompt="x", max_tokens=100, n=2),
        completion(prompt=["a", "b", "c"]),
        completion(prompt=list(range(5000))),  # one prompt of token ids
        embedding(input=["a", "b", "c"], dimensions=256),
        embedding(input=list(range(5000))),
        message(max_tokens=100),
        payload(COUNT_TOKENS, messages=USER),
    ],
)
def test_at_or_under_the_ceilings_passes(request_payload: Any) -> None:
    check_limits(LIMITS, request_payload, "m")


def test_unset_ceilings_limit_nothing() -> None:
    for request_payload in (
        chat(max_tokens=10**9, n=128),
        embedding(input=["a"] * 1000, dimensions=10**6),
        message(max_tokens=10**9),
    ):
        check_limits(LimitSettings(), request_payload, "m")


@pytest.mark.parametrize(
    ("value", "count"),
    [("text", 1), ([1, 2, 3], 1), (["a", "b"], 2), ([[1], [2, 3]], 2)],
)
def test_count_inputs(value: Any, count: int) -> None:
    assert count_inputs(value) == count


def group(name: str = "g", **extra: Any) -> dict[str, Any]:
    return {"name": name, "backends": [{"provider": "fake", "name": f"{name}-0"}], **extra}


def test_limits_settings_are_optional_and_validated() -> None:
    assert settings_from_mapping({"models": [group()]}).models[0].limits is None
    loaded = settings_from_mapping({"models": [group(limits={"max_tokens": 5})]})
    assert loaded.models[0].limits == LimitSettings(max_tokens=5)
    with pytest.raises(ConfigError, match=r"models\[0\]\.limits\.max_n"):
        settings_from_mapping({"models": [group(limits={"max_n": 0})]})
    with pytest.raises(ConfigError, match="max_token"):
        settings_from_mapping({"models": [group(limits={"max_token": 5})]})


def call(body: bytes) -> Call:
    async def receive() -> HTTPRequestEvent:
        return {"type": "http.request", "body": body, "more_body": False}

    # A `Call` reads only the headers of its scope; an HTTPScope requires some twenty keys.
    return Call(cast(HTTPScope, {"type": "http", "headers": []}), receive)


@pytest.mark.anyio
async def test_intake_checks_the_resolved_groups_limits() -> None:
    settings = settings_from_mapping({"models": [group(limits={"max_tokens": 10}), group("free")]})
    pipeline = Pipeline(build_state(settings, plugin_manager(builtins=True)))
    over = {"model": "g", "messages": USER, "max_tokens": 11}
    with pytest.raises(InvalidRequestError) as raised:
        await pipeline.intake(call(json.dumps(over).encode()), CHAT)
    assert raised.value.param == "max_tokens"
    # Anthropic's shape has no `param`: the message leads with the field, once.
    anthropic = json.loads(anthropic_error_json(raised.value))
    assert anthropic["error"]["message"].startswith("max_tokens: the model")
    ctx = await pipeline.intake(call(json.dumps({**over, "max_tokens": 10}).encode()), CHAT)
    assert ctx.model_group.name == "g"
    ctx = await pipeline.intake(call(json.dumps({**over, "model": "free"}).encode()), CHAT)
    assert ctx.model_group.name == "free"
