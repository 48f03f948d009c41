"""No hang from a number: every size a request asks the simulator for is bounded, and anything
out of range is a 400 naming the field, after which the replica still answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.servers import Sim, http_json, running_sim

HUGE = 2**63
USER = [{"role": "user", "content": "hello"}]
CHAT = {"model": "sim-model", "messages": USER}
COMPLETION = {"model": "sim-model", "prompt": "once upon a time"}
EMBEDDING = {"model": "sim-model", "input": "hello"}
MESSAGE = {"model": "sim-model", "max_tokens": 8, "messages": USER}


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    # A small context window so that "too long" prompts stay small requests.
    with running_sim(max_model_len=1024) as sim:
        yield sim


CASES: list[tuple[str, dict[str, Any], str]] = [
    # embeddings: the vector size, the number of inputs, their length, token ids, huge ints
    ("/v1/embeddings", {**EMBEDDING, "dimensions": 100_000_000}, "dimensions"),
    ("/v1/embeddings", {**EMBEDDING, "dimensions": HUGE}, "dimensions"),
    ("/v1/embeddings", {**EMBEDDING, "dimensions": 2**70}, "dimensions"),
    ("/v1/embeddings", {**EMBEDDING, "dimensions": -1}, "dimensions"),
    ("/v1/embeddings", {**EMBEDDING, "dimensions": 4097}, "dimensions"),
    ("/v1/embeddings", {**EMBEDDING, "input": ["x"] * 2049}, "input"),
    ("/v1/embeddings", {**EMBEDDING, "input": "word " * 1000}, "input"),
    ("/v1/embeddings", {**EMBEDDING, "input": [1, -5, 3]}, "input"),
    ("/v1/embeddings", {**EMBEDDING, "input": [[1, HUGE]]}, "input"),
    # chat: max_tokens against the context window, n, the prompt's length, huge ints
    ("/v1/chat/completions", {**CHAT, "max_tokens": HUGE}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 100_000_000}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 1020}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": -3}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_completion_tokens": HUGE}, "max_completion_tokens"),
    ("/v1/chat/completions", {**CHAT, "n": 129}, "n"),
    ("/v1/chat/completions", {**CHAT, "n": HUGE}, "n"),
    ("/v1/chat/completions", {**CHAT, "n": 0}, "n"),
    (
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]},
        "messages",
    ),
    ("/v1/chat/completions", {**CHAT, "seed": 2**64}, "seed"),
    ("/v1/chat/completions", {**CHAT, "priority": -(2**70)}, "priority"),
    ("/v1/chat/completions", {**CHAT, "top_k": -7}, "top_k"),
    ("/v1/chat/completions", {**CHAT, "min_tokens": -1}, "min_tokens"),
    # n choices that could never be held in the KV cache together
    (
        "/v1/chat/completions",
        {**CHAT, "n": 128, "max_tokens": 1000, "ignore_eos": True},
        "n",
    ),
    # completions: the same, and token-id prompts
    ("/v1/completions", {**COMPLETION, "max_tokens": HUGE}, "max_tokens"),
    ("/v1/completions", {**COMPLETION, "max_tokens": -1}, "max_tokens"),
    ("/v1/completions", {**COMPLETION, "n": 1000}, "n"),
    ("/v1/completions", {**COMPLETION, "prompt": "x" * 5000}, "prompt"),
    ("/v1/completions", {**COMPLETION, "prompt": [1, 2, 128_000]}, "prompt"),
    ("/v1/completions", {**COMPLETION, "prompt": [-1]}, "prompt"),
    # Anthropic Messages
    ("/v1/messages", {**MESSAGE, "max_tokens": HUGE}, "max_tokens"),
    ("/v1/messages", {**MESSAGE, "max_tokens": 100_000_000}, "max_tokens"),
    ("/v1/messages", {**MESSAGE, "max_tokens": -1}, "max_tokens"),
    (
        "/v1/messages",
        {**MESSAGE, "messages": [{"role": "user", "content": "x" * 5000}]},
        "messages",
    ),
    ("/v1/messages", {**MESSAGE, "top_k": 2**64}, "top_k"),
    ("/v1/messages", {**MESSAGE, "cache_salt": 5}, "cache_salt"),
]


def _ids(case: tuple[str, dict[str, Any], str]) -> str:
    path, body, field = case
    value = body.get(field)
    shown = value if isinstance(value, int) else type(value).__name__
    return f"{path.rsplit('/', 1)[-1]}-{field}-{shown}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_out_of_range_is_a_400_naming_the_field(
    sim: Sim, case: tuple[str, dict[str, Any], str]
) -> None:
    path, body, field = case
    status, _, answer = http_json("POST", f"{sim.url}{path}", body)
    assert status == 400, answer
    if path == "/v1/messages":
        assert answer["type"] == "error"
        assert answer["error"]["type"] == "invalid_request_error"
        assert field in answer["error"]["message"]
    else:
        error = answer["error"]
        assert error["type"] == "BadRequestError"
        assert error["code"] == 400
        assert error["param"] == field, error
    # ...and the replica still answers.
    status, _, answer = http_json("POST", f"{sim.url}/v1/chat/completions", CHAT)
    assert status == 200, answer


def test_context_length_message_is_vllms(sim: Sim) -> None:
    status, _, answer = http_json(
        "POST", f"{sim.url}/v1/chat/completions", {**CHAT, "max_tokens": 100_000}
    )
    assert status == 400
    message = answer["error"]["message"]
    assert message.startswith("This model's maximum context length is 1024 tokens. However, you")


def test_sizes_within_the_limits_are_served(sim: Sim) -> None:
    status, _, answer = http_json(
        "POST", f"{sim.url}/v1/embeddings", {**EMBEDDING, "input": ["a", "b"], "dimensions": 4096}
    )
    assert status == 200
    assert [len(d["embedding"]) for d in answer["data"]] == [4096, 4096]
    status, _, answer = http_json("POST", f"{sim.url}/v1/embeddings", EMBEDDING)
    assert len(answer["data"][0]["embedding"]) == 256  # the model's own size by default
    body = {**CHAT, "max_tokens": 900, "ignore_eos": True, "stop": ["never"]}
    status, _, answer = http_json("POST", f"{sim.url}/v1/chat/completions", body)
    assert status == 200
    assert answer["usage"]["completion_tokens"] == 900
    status, _, answer = http_json(
        "POST", f"{sim.url}/v1/chat/completions", {**CHAT, "n": 128, "max_tokens": 4}
    )
    assert status == 200
    assert len(answer["choices"]) == 128
    status, _, answer = http_json(
        "POST", f"{sim.url}/v1/completions", {**COMPLETION, "prompt": [0, 127_999]}
    )
    assert status == 200
    status, _, answer = http_json("POST", f"{sim.url}/v1/messages", MESSAGE)
    assert status == 200


def test_profile_limits_can_be_lowered() -> None:
    with running_sim(max_n=2, max_embedding_dim=64, max_embedding_inputs=3) as sim:
        assert http_json("POST", f"{sim.url}/v1/chat/completions", {**CHAT, "n": 3})[0] == 400
        assert http_json("POST", f"{sim.url}/v1/chat/completions", {**CHAT, "n": 2})[0] == 200
        big = {**EMBEDDING, "dimensions": 65}
        assert http_json("POST", f"{sim.url}/v1/embeddings", big)[0] == 400
        many = {**EMBEDDING, "input": ["a"] * 4}
        assert http_json("POST", f"{sim.url}/v1/embeddings", many)[0] == 400
