"""The simulator as vLLM's clients see it: metrics, counting, prefix caching, faults, replicas."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import urllib.request

import openai
import pytest
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import Sim, http_json, running_sim

NEW_NAMES = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:request_success",
    "vllm:num_preemptions",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
    "vllm:cache_config_info",
}
LEGACY = {
    "vllm:gpu_cache_usage_perc",
    "vllm:gpu_prefix_cache_queries",
    "vllm:gpu_prefix_cache_hits",
    "vllm:time_per_output_token_seconds",
}


def scrape(sim: Sim) -> dict[str, float]:
    """Samples by name (labels dropped; every sample here has one label set)."""
    with urllib.request.urlopen(f"{sim.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    families = list(text_string_to_metric_families(text))
    out = {s.name: s.value for f in families for s in f.samples}
    out.update({f"family:{f.name}": 1 for f in families})
    return out


def chat(
    client: openai.OpenAI, content: str, max_tokens: int = 8, **extra: object
) -> ChatCompletion:
    return client.chat.completions.create(
        model="sim-model",
        max_tokens=max_tokens,
        messages=[{"role": "user", "content": content}],
        extra_body=extra or None,
    )


def usage_of(reply: ChatCompletion | ChatCompletionChunk) -> CompletionUsage:
    assert reply.usage is not None
    return reply.usage


def client_for(sim: Sim) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="x", max_retries=0)


def test_metrics_carry_vllm_names_types_and_labels() -> None:
    with running_sim() as sim, client_for(sim) as client:
        chat(client, "hello")
        got = scrape(sim)
    assert {f"family:{n}" for n in NEW_NAMES} <= set(got)
    assert got["vllm:request_success_total"] == 1
    assert got["vllm:cache_config_info"] == 1


def test_legacy_metric_names() -> None:
    from gateway_sim.app import SimConfig, create_sim_app
    from gateway_sim.profiles import PROFILES

    from gateway.server import BackgroundServer

    config = SimConfig(profile=PROFILES["instant"], legacy_metric_names=True)
    with BackgroundServer(create_sim_app(config)) as server:
        got = scrape(Sim(server, config))
    assert {f"family:{n}" for n in LEGACY} <= set(got)
    assert "family:vllm:kv_cache_usage_perc" not in got


def test_counts_agree_with_usage_stats_and_metrics() -> None:
    with running_sim() as sim, client_for(sim) as client:
        replies = [chat(client, f"question {i} " * (i + 1), max_tokens=5 + i) for i in range(6)]
        streamed = list(
            client.chat.completions.create(
                model="sim-model",
                messages=[{"role": "user", "content": "stream please"}],
                max_tokens=7,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        prompt = (
            sum(usage_of(r).prompt_tokens for r in replies) + usage_of(streamed[-1]).prompt_tokens
        )
        generated = (
            sum(usage_of(r).completion_tokens for r in replies)
            + usage_of(streamed[-1]).completion_tokens
        )
        stats = sim.stats()
        got = scrape(sim)
    assert stats["completed"] == 7
    assert stats["prompt_tokens"] == prompt == got["vllm:prompt_tokens_total"]
    assert stats["generation_tokens"] == generated == got["vllm:generation_tokens_total"]
    assert got["vllm:request_success_total"] == 7
    assert got["vllm:e2e_request_latency_seconds_count"] == 7
    assert got["vllm:request_generation_tokens_sum"] == generated
    assert got["vllm:num_requests_running"] == 0


def test_tokenize_matches_usage() -> None:
    with running_sim() as sim, client_for(sim) as client:
        reply = chat(client, "count my tokens please")
        status, _, body = http_json(
            "POST",
            f"{sim.url}/tokenize",
            {
                "model": "sim-model",
                "messages": [{"role": "user", "content": "count my tokens please"}],
            },
        )
    assert status == 200
    assert body["count"] == usage_of(reply).prompt_tokens == len(body["tokens"])


def hit_rate(sim: Sim) -> float:
    got = scrape(sim)
    return got["vllm:prefix_cache_hits_total"] / got["vllm:prefix_cache_queries_total"]


def test_shared_prefix_hits_the_cache_and_random_prompts_do_not() -> None:
    prefix = "You are a meticulous assistant. " * 40  # ~320 tokens shared by every request
    rng = random.Random(7)
    with running_sim() as shared, client_for(shared) as client:
        for i in range(20):
            client.chat.completions.create(
                model="sim-model",
                max_tokens=4,
                messages=[
                    {"role": "system", "content": prefix},
                    {"role": "user", "content": f"question number {i}"},
                ],
            )
        shared_rate = hit_rate(shared)
    with running_sim() as scattered, client_for(scattered) as client:
        for _ in range(20):
            words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(250))
            chat(client, words, max_tokens=4)
        random_rate = hit_rate(scattered)
    assert shared_rate > 0.8
    assert random_rate < 0.1


def test_cache_salt_partitions_the_prefix_cache() -> None:
    prefix = "Shared instructions for everyone. " * 30
    with running_sim() as sim, client_for(sim) as client:
        chat(client, prefix + "one", cache_salt="tenant-a")
        before = scrape(sim)["vllm:prefix_cache_hits_total"]
        chat(client, prefix + "two", cache_salt="tenant-b")
        after_other_tenant = scrape(sim)["vllm:prefix_cache_hits_total"]
        chat(client, prefix + "three", cache_salt="tenant-a")
        after_same_tenant = scrape(sim)["vllm:prefix_cache_hits_total"]
    assert after_other_tenant == before
    assert after_same_tenant > after_other_tenant


def test_reset_prefix_cache_empties_it() -> None:
    prompt = "Shared instructions for everyone. " * 30
    with running_sim() as sim, client_for(sim) as client:
        chat(client, prompt)
        warm = scrape(sim)["vllm:prefix_cache_hits_total"]
        chat(client, prompt)
        hits = scrape(sim)["vllm:prefix_cache_hits_total"]
        status, _, _ = http_json("POST", f"{sim.url}/reset_prefix_cache")
        chat(client, prompt)
        after_reset = scrape(sim)["vllm:prefix_cache_hits_total"]
        assert sim.stats()["prefix_cache_resets"] == 1
    assert status == 200
    assert hits > warm
    assert after_reset == hits  # the third request started cold


def test_small_cache_preempts_and_still_finishes_everything() -> None:
    # 2 ms steps: each request takes ~120 ms, so the eight overlap and contend for 24 blocks.
    with (
        running_sim(num_gpu_blocks=24, max_num_seqs=16, step_base_ms=2) as sim,
        client_for(sim) as client,
    ):
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            replies = list(
                pool.map(lambda i: chat(client, f"request {i} " * 20, max_tokens=60), range(8))
            )
        got = scrape(sim)
    assert all(r.choices[0].message.content for r in replies)
    assert got["vllm:num_preemptions_total"] > 0
    assert got["vllm:request_success_total"] == 8


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_errors_by_status(status: int) -> None:
    with running_sim() as sim, client_for(sim) as client:
        sim.set_faults(error_rates={status: 1.0})
        with pytest.raises(openai.APIStatusError) as raised:
            chat(client, "hi")
        assert raised.value.status_code == status
        assert sim.stats()["injected_errors"] == 1


def test_error_rate_is_a_rate() -> None:
    with running_sim() as sim, client_for(sim) as client:
        sim.set_faults(error_rates={503: 0.5})
        failures = 0
        for _ in range(60):
            try:
                chat(client, "hi", max_tokens=1)
            except openai.InternalServerError:
                failures += 1
        assert sim.stats()["injected_errors"] == failures
        assert 10 < failures < 50


def test_down_replica_fails_health_and_requests_then_revives() -> None:
    with running_sim() as sim, client_for(sim) as client:
        sim.set_faults(down=True)
        assert http_json("GET", f"{sim.url}/health")[0] == 503
        with pytest.raises(openai.InternalServerError):
            chat(client, "hi")
        sim.set_faults(down=False)
        assert http_json("GET", f"{sim.url}/health")[0] == 200
        assert chat(client, "hi").choices


def test_bad_faults_are_rejected() -> None:
    with running_sim() as sim:
        status, _, body = http_json("POST", f"{sim.url}/sim/faults", {"error_rats": {}})
    assert status == 400
    assert "error_rats" in body["error"]["message"]


def two_free_ports() -> int:
    """A port ``p`` such that ``p`` and ``p + 1`` are both free now (bounded tries)."""
    import socket

    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return int(port)
    raise AssertionError("no two consecutive free ports on loopback")


def test_replicas_command_serves_independent_replicas() -> None:
    port = two_free_ports()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "sim",
            "--replicas",
            "2",
            "--port",
            str(port),
            "--profile",
            "instant",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        urls = [f"http://127.0.0.1:{port + i}" for i in range(2)]
        deadline = time.monotonic() + 20
        for url in urls:
            while True:
                try:
                    if http_json("GET", f"{url}/v1/models")[0] == 200:
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        http_json(
            "POST",
            f"{urls[0]}/v1/chat/completions",
            {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert http_json("GET", f"{urls[0]}/sim/stats")[2]["completed"] == 1
        assert http_json("GET", f"{urls[1]}/sim/stats")[2]["completed"] == 0
    finally:
        proc.terminate()
        status = proc.wait(20)
        assert proc.stdout is not None
        output = proc.stdout.read()
        proc.stdout.close()
        assert status == 0, output


def test_a_gate_holds_requests_before_handling_until_released() -> None:
    import concurrent.futures

    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]}
    with running_sim() as sim, concurrent.futures.ThreadPoolExecutor(3) as pool:
        sim.close_gate("g", all=False)
        url = f"{sim.url}/v1/chat/completions"
        held = [pool.submit(http_json, "POST", url, body, {"x-sim-gate": "g"}) for _ in range(2)]
        sim.wait_held(2)
        # Without the header a request is not subject to a gate closed without `all`.
        assert http_json("POST", url, body)[0] == 200
        stats = sim.stats()
        assert (stats["completed"], stats["requests"]["chat"]) == (1, 3)
        assert not any(f.done() for f in held)
        gates = http_json("GET", f"{sim.url}/sim/gates")[2]
        assert gates["g"] == {"closed": True, "all": False, "after_tokens": 0, "held": 2}
        assert sim.release_gate("g") == 2
        assert [f.result(timeout=10)[0] for f in held] == [200, 200]
        # An open gate holds nothing; closing it with `all` holds every request.
        assert http_json("POST", url, body, {"x-sim-gate": "g"})[0] == 200
        sim.close_gate("g")
        plain = pool.submit(http_json, "POST", url, body)
        sim.wait_held(1)
        assert not plain.done()
        sim.release_gate("g")
        assert plain.result(timeout=10)[0] == 200
        assert sim.stats()["held"] == 0
        assert http_json("POST", f"{sim.url}/sim/gates/nope/release", b"")[0] == 404
        assert http_json("POST", f"{sim.url}/sim/gates/g", {"after_tokens": -1})[0] == 400


@pytest.mark.anyio
async def test_a_gate_after_tokens_pauses_a_stream_until_released() -> None:
    with running_sim() as sim:
        sim.close_gate(after_tokens=5)
        async with openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="x", max_retries=0) as c:
            stream = await c.chat.completions.create(
                model="sim-model",
                messages=[{"role": "user", "content": "a story"}],
                max_tokens=20,
                extra_body={"ignore_eos": True},
                stream=True,
            )
            pieces: list[str] = []
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                if len(pieces) == 5:
                    break
            sim.wait_held(1)
            stats = sim.stats()
            assert (stats["running"], stats["generation_tokens"], stats["completed"]) == (1, 0, 0)
            assert sim.release_gate() == 1
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
        assert len(pieces) == 20
        stats = sim.stats()
        assert (stats["completed"], stats["generation_tokens"], stats["held"]) == (1, 20, 0)
