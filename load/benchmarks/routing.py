"""Routing benchmark: strategies against four simulated vLLM replicas, through the gateway.

1. cache_aware against round_robin on a shared-prefix workload sized so that all prefixes do not
   fit in one replica's KV cache: prefix-cache hit rate, output throughput, TTFT.
2. One replica three times slower than the others: p99 end-to-end latency of round_robin,
   least_inflight and p2c_ewma.
3. One of four replicas killed (SIGKILL) mid-run at 200 requests/s: failed requests.

Each replica is its own ``gateway sim`` process (pinned to core 1); the gateway (one worker) and
the harness share core 0. Usage: bash load/benchmarks/routing.sh [--quick] [--only NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def replicas(
    *overrides_per_replica: list[str],
) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """One ``gateway sim`` process per replica (the list gives each one's ``--set`` values)."""
    procs = []
    try:
        for overrides in overrides_per_replica:
            port = free_port()
            args = [*pin(1), sys.executable, "-m", "gateway.cli", "sim", "--port", str(port)]
            for item in overrides:
                args += ["--set", item]
            procs.append(
                (f"http://127.0.0.1:{port}", subprocess.Popen(args, stdout=subprocess.DEVNULL))
            )
        for url, _ in procs:
            wait_until_up(f"{url}/health")
        yield procs
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def gateway(urls: list[str], strategy: str, params: dict[str, Any] | None = None) -> Iterator[str]:
    """One gateway worker (core 0) serving ``urls`` as model ``llama`` with ``strategy``."""
    config = {
        "models": [
            {
                "name": "llama",
                "routing": {"strategy": strategy, "params": params or {}},
                "backends": [
                    {"url": u, "model": "sim-model", "name": f"r{i}"} for i, u in enumerate(urls)
                ],
            }
        ],
    }
    with serve_gateway(config) as target:
        yield target


def drive(
    target: str, workload: workloads.Workload, metrics: list[str], **settings: Any
) -> dict[str, Any]:
    config = RunSettings(target=target, model="llama", metrics_urls=metrics, **settings)
    outcome = asyncio.run(run_workload(workload, config, label=workload.name))
    summary = summarize(outcome.records, outcome.duration, outcome.offered_rate, {})
    summary["prefix_cache"] = outcome.prefix_cache
    return summary


def cache_aware_vs_round_robin(quick: bool) -> list[dict[str, Any]]:
    # 16 prefixes of 2,000 tokens = 32k prefix tokens; a replica caches 12k tokens (750 blocks):
    # one replica cannot hold every prefix, a quarter of them it can.
    cache = ["num_gpu_blocks=750"]
    per_group = 8 if quick else 24
    rows = []
    for strategy in ("round_robin", "cache_aware"):
        with replicas(cache, cache, cache, cache) as sims:
            urls = [u for u, _ in sims]
            with gateway(urls, strategy) as target:
                s = drive(
                    target,
                    workloads.shared_prefix(16, per_group, 2000, 64, 32, seed=7),
                    [f"{u}/metrics" for u in urls],
                    concurrency=32,
                )
        rows.append(
            {
                "strategy": strategy,
                "completed": s["completed"],
                "failed": s["failed"],
                "hit_rate": s["prefix_cache"]["hit_rate"],
                "output_tok_s": s["output_throughput"],
                "req_s": s["request_throughput"],
                "mean_ttft_ms": s["mean_ttft_ms"],
                "p90_ttft_ms": s["p90_ttft_ms"],
                "p99_e2el_ms": s["p99_e2el_ms"],
            }
        )
    return rows


def slow_replica(quick: bool) -> list[dict[str, Any]]:
    slow = ["step_base_ms=18", "prefill_ms_per_token=0.12", "decode_ms_per_seq=0.09"]
    count = 300 if quick else 800
    rows = []
    for strategy in ("round_robin", "least_inflight", "p2c_ewma"):
        with replicas([], [], [], slow) as sims:
            urls = [u for u, _ in sims]
            with gateway(urls, strategy) as target:
                s = drive(target, workloads.synthetic(count, 512, 64, seed=3), [], rate=40.0)
        rows.append(
            {
                "strategy": strategy,
                "completed": s["completed"],
                "failed": s["failed"],
                "p50_e2el_ms": s["median_e2el_ms"],
                "p99_e2el_ms": s["p99_e2el_ms"],
                "p99_ttft_ms": s["p99_ttft_ms"],
                "backends": s["backends"],
            }
        )
    return rows


def kill_one(quick: bool) -> list[dict[str, Any]]:
    fast = ["step_base_ms=2", "prefill_ms_per_token=0.001", "decode_ms_per_seq=0.01"]
    seconds = 6 if quick else 12
    with replicas(fast, fast, fast, fast) as sims:
        urls = [u for u, _ in sims]
        with gateway(urls, "round_robin") as target:
            victim = sims[1][1]

            async def killer() -> None:
                await asyncio.sleep(seconds / 3)
                victim.send_signal(signal.SIGKILL)

            async def both() -> dict[str, Any]:
                config = RunSettings(target=target, model="llama", rate=200.0, stream=False)
                task = asyncio.create_task(killer())
                outcome = await run_workload(
                    workloads.synthetic(200 * seconds, 64, 16, seed=5), config, label="kill"
                )
                await task
                return summarize(outcome.records, outcome.duration, outcome.offered_rate, {})

            s = asyncio.run(both())
    return [
        {
            "scenario": f"SIGKILL 1 of 4 replicas after {seconds // 3}s at 200 req/s",
            "completed": s["completed"],
            "failed": s["failed"],
            "errors": s["errors"],
            "achieved_req_s": s["request_throughput"],
            "p99_e2el_ms": s["p99_e2el_ms"],
            "backends": s["backends"],
        }
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["cache_aware", "slow_replica", "kill"])
    parser.add_argument("--out", default="load/results/routing.json")
    args = parser.parse_args()
    if TWO_CORES:
        os.sched_setaffinity(0, {0})
    result: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    parts = (
        ("cache_aware", cache_aware_vs_round_robin),
        ("slow_replica", slow_replica),
        ("kill", kill_one),
    )
    for name, fn in parts:
        if args.only and args.only != name:
            continue
        result[name] = fn(args.quick)
        print(f"\n== {name}", flush=True)
        print(format_table(result[name]))
    print()
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
