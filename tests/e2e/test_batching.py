"""Embedding micro-batching end to end: merged upstream calls, results split back correctly."""

from __future__ import annotations

import concurrent.futures
import random
from typing import Any

from tests.support.servers import group, http_json, running_gateway, running_sim


def embed(url: str, value: Any, **extra: Any) -> tuple[int, dict[str, str], Any]:
    return http_json("POST", f"{url}/v1/embeddings", {"model": "emb", "input": value, **extra})


def test_concurrent_requests_share_calls_and_get_their_own_results() -> None:
    rng = random.Random(4)
    inputs: list[Any] = []
    for i in range(24):
        size = rng.randint(1, 4)
        if i % 6 == 5:
            inputs.append([[i, j, 7] for j in range(size)])  # token arrays: their own batches
        elif size == 1:
            inputs.append(f"single text {i}")
        else:
            inputs.append([f"text {i}.{j} " * rng.randint(1, 5) for j in range(size)])
    with running_sim(embed_call_ms=30, embed_ms_per_input=0.1) as sim:
        config = {
            "models": [
                group(
                    "emb", sim.url, batching={"enabled": True, "max_inputs": 16, "max_wait_ms": 10}
                )
            ]
        }
        with running_gateway(config) as gw, concurrent.futures.ThreadPoolExecutor(24) as pool:
            results = list(pool.map(lambda v: embed(gw.url, v), inputs))
        upstream_calls = sim.stats()["requests"]["embeddings"]
        expected = [
            http_json("POST", f"{sim.url}/v1/embeddings", {"model": "sim-model", "input": v})[2]
            for v in inputs
        ]
    assert upstream_calls < len(inputs)  # requests were merged
    for (status, _, body), alone in zip(results, expected, strict=True):
        assert status == 200
        assert [d["index"] for d in body["data"]] == list(range(len(alone["data"])))
        assert [d["embedding"] for d in body["data"]] == [d["embedding"] for d in alone["data"]]
        assert body["usage"]["prompt_tokens"] > 0


def test_a_failed_batch_reports_to_each_caller() -> None:
    with running_sim(embed_call_ms=20) as sim:
        sim.set_faults(error_rates={400: 1.0})
        config = {"models": [group("emb", sim.url, batching={"enabled": True, "max_wait_ms": 10})]}
        with running_gateway(config) as gw, concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda i: embed(gw.url, f"text {i}"), range(6)))
    assert [status for status, _, _ in results] == [400] * 6
    assert all(body["error"]["message"] == "Injected fault: status 400" for _, _, body in results)


def test_batching_is_off_by_default_and_per_group() -> None:
    with running_sim() as sim, running_gateway({"models": [group("emb", sim.url)]}) as gw:
        status, headers, _ = embed(gw.url, "hello")
    assert status == 200
    assert headers["x-gateway-backend"] == "emb-0"
