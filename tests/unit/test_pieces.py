"""Pure pieces: validation messages, stream usage, round robin, auth, the simulator's engine."""

from __future__ import annotations

import pytest
from gateway_round_robin import RoundRobinStrategy
from gateway_sim.generation import embed, generate
from gateway_sim.tokens import count_tokens

from gateway.auth import Authenticator
from gateway.cache.coalesce import is_usage_only
from gateway.codec import with_model
from gateway.errors import AuthenticationError
from gateway.pipeline.telemetry import usage_in_stream_tail
from gateway.routing.base import RouteRequest
from gateway.schemas.validation import split_validation_message
from gateway.sse import SSEFramer
from tests.unit.test_strategies import Snap


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Expected `int`, got `str` - at `$.server.port`",
            ("server.port", "Expected `int`, got `str`"),
        ),
        ("Object missing required field `model`", ("model", "required field is missing")),
        (
            "Object missing required field `role` - at `$.messages[0]`",
            ("messages[0].role", "required field is missing"),
        ),
        ("Object contains unknown field `x` - at `$.a`", ("a.x", "unknown field")),
        ("`input` must not be empty", ("input", "`input` must not be empty")),
        ("Expected `object`, got `array`", (None, "Expected `object`, got `array`")),
    ],
)
def test_split_validation_message(message: str, expected: tuple[str | None, str]) -> None:
    assert split_validation_message(message) == expected


def test_usage_in_stream_tail_finds_the_last_usage() -> None:
    tail = (
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,'
        b'"total_tokens":7}}\n\ndata: [DONE]\n\n'
    )
    usage = usage_in_stream_tail(tail)
    assert usage is not None
    assert (usage.prompt, usage.completion) == (3, 4)
    assert usage_in_stream_tail(b'data: {"choices":[{"delta":{}}]}\n\n') is None
    assert usage_in_stream_tail(b'ata: {"usage": {"prompt_tok') is None


def test_with_model_keeps_every_other_field() -> None:
    body = b'{"model":"a","top_k":3,"nested":{"x":[1]}}'
    assert with_model(body, "b") == b'{"model":"b","top_k":3,"nested":{"x":[1]}}'


def test_round_robin_cycles() -> None:
    strategy = RoundRobinStrategy()
    request = RouteRequest("m", "chat/completions", None, {})
    backends = [Snap("a"), Snap("b"), Snap("c")]
    picks = [strategy.choose(request, backends) for _ in range(6)]
    assert picks == [0, 1, 2, 0, 1, 2]


@pytest.mark.anyio
async def test_authenticator() -> None:
    auth = Authenticator(["sk-a", "sk-b"], master_key="sk-m")
    b = await auth.authenticate({"authorization": "Bearer sk-b"})
    assert (await auth.authenticate({"authorization": "bearer  sk-a"})).key_id != b.key_id
    assert (await auth.authenticate({"x-api-key": "sk-a"})).key_id is not None
    assert not b.admin
    assert (await auth.authenticate({"authorization": "Bearer sk-m"})).admin
    for bad in (None, "sk-a", "Bearer sk-c", "Bearer "):
        with pytest.raises(AuthenticationError):
            await auth.authenticate({"authorization": bad} if bad else {})
    assert (await Authenticator([]).authenticate({})).anonymous


def test_engine_is_deterministic_and_counts_honestly() -> None:
    first = generate("hello", None)
    assert first == generate("hello", None)
    assert first != generate("hello", None, choice=1)
    assert len(generate("hello", 3).tokens) == 3
    assert generate("hello", 3).finish_reason == "length"
    assert count_tokens("abcdefgh") == 2
    assert count_tokens("abcdefghi") == 3
    vector = embed("x", 16)
    assert len(vector) == 16
    assert abs(sum(v * v for v in vector) - 1) < 1e-9


def test_sse_framer_cuts_whole_events_across_chunk_boundaries() -> None:
    framer = SSEFramer()
    assert framer.feed(b'data: {"a"') == []
    assert framer.feed(b":1}\r\n\r\ndata: [DO") == [b'data: {"a":1}\n\n']
    assert framer.feed(b"NE]\n\n") == [b"data: [DONE]\n\n"]
    assert framer.flush() == b""


@pytest.mark.parametrize(
    ("event", "usage_only"),
    [
        (b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n', True),
        (b'data: {"choices": [], "usage": {"total_tokens": 4}}\n\n', True),
        (b'data: {"choices":[{"delta":{"content":"x"}}],"usage":null}\n\n', False),
        (b'data: {"choices":[],"usage":null}\n\n', False),
        (b"data: [DONE]\n\n", False),
    ],
)
def test_is_usage_only(event: bytes, usage_only: bool) -> None:
    assert is_usage_only(event) is usage_only
