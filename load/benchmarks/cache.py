"""Cache, batching and coalescing benchmark (issue 6).

1. Cache hits: wrk against one gateway worker (core 0) answering the same deterministic chat
   request from its memory tier, from a Redis-only tier, and with the cache off (relay to nginx).
2. Embedding micro-batching against none: a simulated embedding server charging 5 ms per call
   plus 0.05 ms per input, 64 concurrent single-input clients (closed loop, the harness).
3. Coalescing: N identical concurrent requests, counted at the simulator.

Usage: bash load/benchmarks/cache.sh [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import (
    TWO_CORES,
    format_table,
    free_port,
    pin,
    serve_gateway,
    wait_until_up,
    write_result,
)
from gateway_loadgen import workloads
from gateway_loadgen.results import summarize
from gateway_loadgen.runner import RunSettings, run_workload
from overhead import API_KEY, REQUEST, run_wrk, start_static_upstream

CACHED_REQUEST = {**REQUEST, "temperature": 0}


@contextmanager
def redis_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [*pin(1), "redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


def cache_hits(duration: int) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="gateway-cache-"))
    nginx, upstream, _ = start_static_upstream(work, 1 if TWO_CORES else None)
    rows = []
    try:
        backend = {"url": f"http://127.0.0.1:{upstream}", "model": "bench-model"}
        base = {"auth": {"api_keys": [API_KEY]}}
        with redis_server() as redis_url:
            variants: dict[str, dict[str, Any]] = {
                "cache off (relay to nginx)": {
                    "models": [{"name": "bench", "backends": [backend]}]
                },
                "memory-tier hit": {
                    "models": [{"name": "bench", "backends": [backend], "cache": {"enabled": True}}]
                },
                "redis-tier hit (no memory tier)": {
                    "models": [
                        {"name": "bench", "backends": [backend], "cache": {"enabled": True}}
                    ],
                    "cache": {"tiers": [{"backend": "redis", "options": {"url": redis_url}}]},
                },
            }
            for name, config in variants.items():
                with serve_gateway({**base, **config}) as target:
                    url = f"{target}/v1/chat/completions"
                    run_wrk(url, CACHED_REQUEST, 8, 1, work, 1 if TWO_CORES else None)  # warm
                    for conns in (1, 32):
                        r = run_wrk(
                            url, CACHED_REQUEST, conns, duration, work, 1 if TWO_CORES else None
                        )
                        rows.append(
                            {
                                "case": name,
                                "connections": conns,
                                "req_s": r["rps"],
                                "p50_ms": r["p50_us"] / 1000,
                                "p99_ms": r["p99_us"] / 1000,
                                "errors": r["errors"],
                            }
                        )
    finally:
        nginx.send_signal(signal.SIGTERM)
        nginx.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return rows


@contextmanager
def embedding_sim() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            *pin(1),
            sys.executable,
            "-m",
            "gateway.cli",
            "sim",
            "--port",
            str(port),
            "--profile",
            "instant",
            "--set",
            "embed_call_ms=5",
            "--set",
            "embed_ms_per_input=0.05",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def batching(quick: bool) -> list[dict[str, Any]]:
    count = 1000 if quick else 3000
    rows = []
    for enabled in (False, True):
        with embedding_sim() as sim:
            config = {
                "models": [
                    {
                        "name": "emb",
                        "backends": [{"url": sim, "model": "sim-model"}],
                        "batching": {"enabled": enabled, "max_inputs": 64, "max_wait_ms": 2},
                    }
                ]
            }
            with serve_gateway(config) as target:
                settings = RunSettings(target=target, model="emb", concurrency=64)
                outcome = asyncio.run(
                    run_workload(
                        workloads.embedding_bursts(count, 1, 16, seed=1), settings, "embeddings"
                    )
                )
                s = summarize(outcome.records, outcome.duration, None, {})
                with urllib.request.urlopen(f"{sim}/sim/stats") as resp:
                    calls = json.load(resp)["requests"]["embeddings"]
        rows.append(
            {
                "batching": "on" if enabled else "off",
                "completed": s["completed"],
                "failed": s["failed"],
                "req_s": s["request_throughput"],
                "p50_ms": s["median_e2el_ms"],
                "p99_ms": s["p99_e2el_ms"],
                "upstream_calls": calls,
            }
        )
    return rows


def coalescing() -> list[dict[str, Any]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            *pin(1),
            sys.executable,
            "-m",
            "gateway.cli",
            "sim",
            "--port",
            str(port),
            "--set",
            "step_base_ms=20",
        ],
        stdout=subprocess.DEVNULL,
    )
    sim = f"http://127.0.0.1:{port}"
    rows = []
    try:
        wait_until_up(f"{sim}/health")
        config = {
            "models": [
                {
                    "name": "chat",
                    "backends": [{"url": sim, "model": "sim-model"}],
                    "cache": {"enabled": True},
                }
            ]
        }
        with serve_gateway(config) as target:
            for n, stream in ((10, False), (100, False), (10, True), (100, True)):
                body = json.dumps(
                    {
                        "model": "chat",
                        "temperature": 0,
                        "max_tokens": 32,
                        "stream": stream,
                        "messages": [{"role": "user", "content": f"same {n} {stream}"}],
                    }
                )

                def call(_: int, body: str = body, stream: bool = stream) -> int:
                    request = urllib.request.Request(
                        f"{target}/v1/chat/completions",
                        data=body.encode(),
                        headers={"content-type": "application/json"},
                    )
                    with urllib.request.urlopen(request, timeout=60) as resp:
                        complete = resp.read().rstrip().endswith(b"[DONE]") or not stream
                        return int(resp.status) if complete else -1

                with urllib.request.urlopen(f"{sim}/sim/stats") as resp:
                    before = json.load(resp)["requests"].get("chat", 0)
                with concurrent.futures.ThreadPoolExecutor(n) as pool:
                    statuses = list(pool.map(call, range(n)))
                with urllib.request.urlopen(f"{sim}/sim/stats") as resp:
                    after = json.load(resp)["requests"].get("chat", 0)
                rows.append(
                    {
                        "kind": "stream" if stream else "plain",
                        "identical_concurrent_requests": n,
                        "answered_200": statuses.count(200),
                        "upstream_calls": after - before,
                    }
                )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["hits", "batching", "coalescing"])
    parser.add_argument("--out", default="load/results/cache.json")
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "redis-server"):
        if not shutil.which(tool):
            print(f"missing {tool}: run load/benchmarks/cache.sh", file=sys.stderr)
            return 2
    result: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    parts: tuple[tuple[str, Callable[[], list[dict[str, Any]]]], ...] = (
        ("hits", lambda: cache_hits(args.duration)),
        ("batching", lambda: batching(args.quick)),
        ("coalescing", coalescing),
    )
    for name, fn in parts:
        if args.only and args.only != name:
            continue
        result[name] = fn()
        print(f"\n== {name}\n{format_table(result[name])}", flush=True)
    print()
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
