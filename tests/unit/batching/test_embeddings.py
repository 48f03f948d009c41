"""Embedding micro-batching (gateway.batching.embeddings) against a fake upstream: limits, the
order of results, usage shares, and failures fanned out to single retries."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.background import Spawn
from gateway.batching.embeddings import BatchLimits, EmbeddingBatcher, as_inputs
from gateway.errors import UpstreamStatusError
from gateway.tokens import estimate_tokens

pytestmark = pytest.mark.anyio
WAIT_FOREVER = 60_000.0  # batches in these tests go when full, not on their deadline


class FakeUpstream:
    """Answers an embeddings call with one vector per input (the input itself, recognisable),
    and records every call; inputs in ``reject`` fail the call they are in."""

    def __init__(self, reject: tuple[str, ...] = ()) -> None:
        self.calls: list[dict[str, Any]] = []
        self.reject = reject

    async def send(self, body: bytes) -> bytes:
        request = json.loads(body)
        self.calls.append(request)
        inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
        if any(i in self.reject for i in inputs):
            raise UpstreamStatusError(400, f"rejected {inputs}")
        data = [{"object": "embedding", "index": n, "embedding": [i]} for n, i in enumerate(inputs)]
        data.reverse()  # upstreams may answer in any order; `index` says which is which
        tokens = 10 * len(inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return json.dumps({"object": "list", "data": data, "model": "m", "usage": usage}).encode()


def request(inputs: Any, **params: Any) -> bytes:
    return json.dumps({"model": "m", "input": inputs, **params}).encode()


def vectors(body: bytes) -> list[tuple[int, Any]]:
    """(index, input) of each embedding in an answer, by index."""
    return sorted((d["index"], d["embedding"][0]) for d in json.loads(body)["data"])


async def test_requests_together_share_one_call_and_get_their_own_results(spawn: Spawn) -> None:
    upstream = FakeUpstream()
    batcher = EmbeddingBatcher(
        BatchLimits(max_inputs=4, max_wait_ms=WAIT_FOREVER), upstream.send, spawn
    )
    results = await asyncio.gather(
        batcher.submit(request(["a", "b"])),
        batcher.submit(request("c")),
        batcher.submit(request(["d"])),
    )
    assert len(upstream.calls) == 1
    assert upstream.calls[0]["input"] == ["a", "b", "c", "d"]
    assert [vectors(r) for r in results] == [[(0, "a"), (1, "b")], [(0, "c")], [(0, "d")]]
    usages = [json.loads(r)["usage"]["prompt_tokens"] for r in results]
    assert sum(usages) == 40  # the upstream's usage, shared out
    assert usages[0] > usages[1]
    assert (batcher.batches, batcher.batched_requests) == (1, 3)


async def test_a_batch_goes_when_full_and_the_rest_opens_the_next(spawn: Spawn) -> None:
    upstream = FakeUpstream()
    limits = BatchLimits(max_inputs=3, max_wait_ms=WAIT_FOREVER)
    batcher = EmbeddingBatcher(limits, upstream.send, spawn)
    results = await asyncio.gather(
        batcher.submit(request(["a", "b"])),
        batcher.submit(request(["c", "d"])),  # would exceed 3: the first batch goes first
        batcher.submit(request(["e"])),  # fills the second batch
    )
    assert [c["input"] for c in upstream.calls] == [["a", "b"], ["c", "d", "e"]]
    assert [vectors(r) for r in results] == [
        [(0, "a"), (1, "b")],
        [(0, "c"), (1, "d")],
        [(0, "e")],
    ]


async def test_the_token_limit_also_closes_a_batch(spawn: Spawn) -> None:
    upstream = FakeUpstream()
    limits = BatchLimits(max_inputs=100, max_tokens=4, max_wait_ms=WAIT_FOREVER)
    batcher = EmbeddingBatcher(limits, upstream.send, spawn)
    await asyncio.gather(
        batcher.submit(request("x" * 8)),  # 2 tokens
        batcher.submit(request("y" * 8)),  # 4: full
        batcher.submit(request("z" * 12)),  # 3 more would exceed 4: the next batch
        batcher.submit(request("w" * 4)),  # 4: full
    )
    assert [c["input"] for c in upstream.calls] == [["x" * 8, "y" * 8], ["z" * 12, "w" * 4]]


async def test_a_lone_request_goes_as_sent_on_its_deadline(spawn: Spawn) -> None:
    upstream = FakeUpstream()
    batcher = EmbeddingBatcher(BatchLimits(max_wait_ms=1), upstream.send, spawn)
    body = request("alone", encoding_format="float")
    assert vectors(await batcher.submit(body)) == [(0, "alone")]
    assert upstream.calls == [json.loads(body)]
    assert batcher.batches == 0


async def test_different_parameters_are_never_merged(spawn: Spawn) -> None:
    upstream = FakeUpstream()
    batcher = EmbeddingBatcher(BatchLimits(max_inputs=2, max_wait_ms=1), upstream.send, spawn)
    await asyncio.gather(
        batcher.submit(request("a", dimensions=8)),
        batcher.submit(request("b", dimensions=16)),
        batcher.submit(request([1, 2, 3])),  # token arrays are their own kind
    )
    assert sorted(json.dumps(c["input"]) for c in upstream.calls) == ['"a"', '"b"', "[1, 2, 3]"]


async def test_a_failed_batch_is_retried_alone_so_each_caller_gets_its_own_outcome(
    spawn: Spawn,
) -> None:
    upstream = FakeUpstream(reject=("bad",))
    batcher = EmbeddingBatcher(
        BatchLimits(max_inputs=4, max_wait_ms=WAIT_FOREVER), upstream.send, spawn
    )
    results = await asyncio.gather(
        batcher.submit(request("good")),
        batcher.submit(request("bad")),
        batcher.submit(request(["fine", "too"])),
        return_exceptions=True,
    )
    # The batch failed; then each request went alone.
    assert [c["input"] for c in upstream.calls] == [
        ["good", "bad", "fine", "too"],
        "good",
        "bad",
        ["fine", "too"],
    ]
    good, bad, other = results
    assert isinstance(good, bytes)
    assert vectors(good) == [(0, "good")]
    assert isinstance(bad, UpstreamStatusError)
    assert isinstance(other, bytes)
    assert vectors(other) == [(0, "fine"), (1, "too")]


def test_inputs_and_token_estimates() -> None:
    assert as_inputs("text") == (["text"], "text")
    assert as_inputs(["a", "b"]) == (["a", "b"], "text")
    assert as_inputs([1, 2]) == ([[1, 2]], "tokens")
    assert as_inputs([[1], [2, 3]]) == ([[1], [2, 3]], "tokens")
    assert estimate_tokens("12345678") == 2
    assert estimate_tokens("") == 1
    assert estimate_tokens([1, 2, 3]) == 3
