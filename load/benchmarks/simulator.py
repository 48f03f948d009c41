"""Simulator and harness benchmark: profile fidelity, saturation curve, harness ceiling.

1. Fidelity: one request at a time (and a batch of 64) against the default profile; measured TTFT
   and ITL next to what the profile's cost model promises.
2. Saturation: an open-loop sweep over offered rates; throughput and p99 TTFT against the rate.
3. Harness ceiling: a closed loop of N concurrent streams against a replica that emits one token
   per stream every 50 ms; the harness's CPU use, chunks timed per second and measured ITL (which
   stays at 50 ms while the client keeps up).

The simulator runs as its own process (pinned to core 1), the harness in this one (core 0).
Usage: bash load/benchmarks/simulator.sh [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import format_table, free_port
from gateway_loadgen import workloads
from gateway_loadgen.results import summarize
from gateway_loadgen.runner import RunSettings, run_workload
from gateway_sim.profiles import DEFAULT_PROFILE, PROFILES

PROFILE = PROFILES[DEFAULT_PROFILE]


class SimProcess:
    """``gateway sim`` in a subprocess on its own core."""

    def __init__(self, *overrides: str, profile: str = DEFAULT_PROFILE) -> None:
        self.port = free_port()
        pin = ["taskset", "-c", "1"] if (os.cpu_count() or 1) >= 2 else []
        args = [
            *pin,
            sys.executable,
            "-m",
            "gateway.cli",
            "sim",
            "--port",
            str(self.port),
            "--profile",
            profile,
        ]
        for override in overrides:
            args += ["--set", override]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("simulator did not start") from None
                time.sleep(0.1)

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(url: str, workload: workloads.Workload, **settings: Any) -> dict[str, Any]:
    config = RunSettings(target=url, model="sim-model", metrics_urls=[f"{url}/metrics"], **settings)
    outcome = asyncio.run(run_workload(workload, config, label=workload.name))
    summary = summarize(outcome.records, outcome.duration, outcome.offered_rate, {})
    summary["client_cpu"] = outcome.client_cpu
    summary["prefix_cache"] = outcome.prefix_cache
    summary["chunks_per_s"] = (
        sum(len(r.itls) + 1 for r in outcome.records if r.ok) / outcome.duration
    )
    return summary


def fidelity(quick: bool) -> list[dict[str, Any]]:
    p = PROFILE
    n = 10 if quick else 30
    rows = []
    with SimProcess() as sim:
        alone = measure(sim.url, workloads.synthetic(n, 1000, 50, seed=1), concurrency=1)
        prompt = 1000 + 3  # the chat template adds a few tokens
        rows.append(
            {
                "case": "1 request, 1000-token prompt, uncached",
                "promised_ttft_ms": p.step_base_ms + prompt * p.prefill_ms_per_token,
                "measured_ttft_ms": alone["median_ttft_ms"],
                "promised_itl_ms": p.step_base_ms + p.decode_ms_per_seq,
                "measured_itl_ms": alone["median_itl_ms"],
            }
        )
        same = workloads.synthetic(1, 1000, 50, seed=2)
        same.sessions *= n
        cached = measure(sim.url, same, concurrency=1)
        rows.append(
            {
                "case": "1 request, same prompt again (prefix cached)",
                "promised_ttft_ms": p.step_base_ms + p.block_size * p.prefill_ms_per_token,
                "measured_ttft_ms": cached["median_ttft_ms"],
                "promised_itl_ms": p.step_base_ms + p.decode_ms_per_seq,
                "measured_itl_ms": cached["median_itl_ms"],
                "hit_rate": cached["prefix_cache"]["hit_rate"],
            }
        )
        batch = measure(
            sim.url, workloads.synthetic(64 if quick else 128, 1000, 200, seed=3), concurrency=64
        )
        rows.append(
            {
                "case": "64 concurrent requests (ITL while decoding)",
                "promised_ttft_ms": None,
                "measured_ttft_ms": batch["median_ttft_ms"],
                "promised_itl_ms": p.step_base_ms + 64 * p.decode_ms_per_seq,
                "measured_itl_ms": batch["median_itl_ms"],
            }
        )
    return rows


def saturation(quick: bool) -> list[dict[str, Any]]:
    rates = [10, 40, 80, 160] if quick else [10, 20, 40, 60, 80, 100, 140, 200]
    rows = []
    with SimProcess() as sim:
        for rate in rates:
            count = max(60, int(rate * (4 if quick else 8)))
            s = measure(
                sim.url,
                workloads.synthetic(count, 512, 64, range_ratio=0.25, seed=rate),
                rate=float(rate),
            )
            rows.append(
                {
                    "offered_rate": s["offered_rate"],
                    "request_throughput": s["request_throughput"],
                    "output_throughput": s["output_throughput"],
                    "p50_ttft_ms": s["median_ttft_ms"],
                    "p99_ttft_ms": s["p99_ttft_ms"],
                    "p50_itl_ms": s["median_itl_ms"],
                    "completed": s["completed"],
                    "failed": s["failed"],
                    "client_cpu": s["client_cpu"],
                }
            )
    return rows


def ceiling(quick: bool) -> list[dict[str, Any]]:
    levels = [250, 1000] if quick else [250, 500, 1000, 1500, 2000]
    rows = []
    with SimProcess(
        "step_base_ms=50",
        "decode_ms_per_seq=0",
        "prefill_ms_per_token=0",
        "max_num_seqs=4096",
        "num_gpu_blocks=400000",
    ) as sim:
        for streams in levels:
            s = measure(
                sim.url, workloads.synthetic(streams * 2, 16, 40, seed=streams), concurrency=streams
            )
            rows.append(
                {
                    "streams": streams,
                    "completed": s["completed"],
                    "failed": s["failed"],
                    "chunks_per_s": s["chunks_per_s"],
                    "client_cpu": s["client_cpu"],
                    "p50_itl_ms": s["median_itl_ms"],
                    "p99_itl_ms": s["p99_itl_ms"],
                    "nominal_itl_ms": 50.0,
                }
            )
    return rows


def harness_alone(quick: bool) -> list[dict[str, Any]]:
    """The harness timing nginx's static 64-chunk stream as fast as it can: its own limit."""
    sys.path.insert(0, str(Path(__file__).parent))
    import shutil
    import tempfile

    from overhead import start_static_upstream, wait_http

    if not shutil.which("nginx"):
        return []
    work = Path(tempfile.mkdtemp(prefix="gateway-harness-"))
    proc, _, stream_port = start_static_upstream(work, 1 if (os.cpu_count() or 1) >= 2 else None)
    rows = []
    try:
        url = f"http://127.0.0.1:{stream_port}"
        wait_http(f"{url}/v1/chat/completions")
        for streams in [64, 256] if quick else [64, 256, 1024]:
            s = measure(url, workloads.synthetic(streams * 20, 8, 8), concurrency=streams)
            rows.append(
                {
                    "streams": streams,
                    "requests_per_s": s["request_throughput"],
                    "chunks_per_s": s["chunks_per_s"],
                    "client_cpu": s["client_cpu"],
                    "failed": s["failed"],
                }
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    parser.add_argument("--only", choices=["fidelity", "saturation", "ceiling", "harness"])
    parser.add_argument("--out", default="load/results/simulator.json")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    result: dict[str, Any] = {
        "profile": PROFILE.name,
        "python": sys.version.split()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    parts = (
        ("fidelity", fidelity),
        ("saturation", saturation),
        ("ceiling", ceiling),
        ("harness", harness_alone),
    )
    for name, fn in parts:
        if args.only and args.only != name:
            continue
        rows = fn(args.quick)
        result[name] = rows
        if not rows:
            continue
        print(f"\n== {name}\n{format_table(rows)}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(result, indent=2, default=lambda v: None if v != v or math.isinf(v) else v)
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
