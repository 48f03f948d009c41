"""Overload: two simulator replicas offered about twice their capacity, a heavy tenant sending ten
times the light tenant's rate, both streaming; ``fifo`` against ``fair_share`` (and ``priority``
with the light tenant in the higher band), the light tenant's p99 TTFT and goodput compared
with its own unloaded figures.

- Engines: ``gateway sim --replicas 2`` (the ``llama-3.1-8b-h100`` profile with ``max_num_seqs``
  8: each replica runs eight sequences at once), one process, on core 1.
- Gateway: one worker on core 0; the group's ``scheduling`` caps each backend at 8 in flight
  (the engines' batch; ``least_inflight`` routing keeps each backend within it), so the queue
  forms in the gateway, where the scheduler orders it. Under ``fair_share`` and ``priority``,
  ``--headroom`` (2) of each backend's 8 slots are held for urgent requests (a tenant under its
  share; the high band), and ``fair_share`` puts a tenant under its share of the slots first
  (``under_share_first``); ``fair_share`` also runs with neither, for comparison.
- Load: two ``gateway load run`` processes at once (Poisson arrivals, synthetic prompts of 200
  tokens, 64 output tokens), each with its tenant's virtual key.
- Goodput: the share of the light tenant's requests that completed with a TTFT within
  ``--slo-factor`` (2) times its unloaded p99.

Usage: bash load/benchmarks/fairness.sh [--seconds 30] [--light-rate 6] [--headroom 2]
[--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import format_table, free_port, pin, wait_until_up

MASTER = "sk-bench-fairness"
PEPPER = "pepper-of-the-fairness-benchmark"


def admin(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        found: dict[str, Any] = json.loads(resp.read())
        return found


def start_gateway(
    work: Path, sims: list[str], scheduler: str, headroom: int
) -> tuple[subprocess.Popen[bytes], str]:
    # With a headroom, fair_share also puts a tenant under its share first in every pop.
    options = {"under_share_first": True} if headroom and scheduler == "fair_share" else {}
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "workers": 1},
        "auth": {"master_key": MASTER},
        "governance": {"data_dir": str(work / f"gov-{scheduler}-{port}")},
        "models": [
            {
                "name": "chat",
                "backends": [{"url": u, "model": "sim-model"} for u in sims],
                # the cap is per backend: keep each engine's batch within it
                "routing": {"strategy": "least_inflight"},
                "scheduling": {
                    "scheduler": {"backend": scheduler, "options": options},
                    "max_in_flight": 8,
                    "headroom": headroom,
                    "queue_timeout_s": 60,
                    "max_queue": 100_000,
                },
            }
        ],
    }
    path = work / f"gateway-{scheduler}-{headroom}.json"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [*pin(0), sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)],
        stderr=(work / f"gateway-{scheduler}-{headroom}.log").open("w"),
        env={**os.environ, "GATEWAY_KEY_PEPPER": PEPPER},
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/healthz", timeout_s=90)
    return proc, url


def load_run(
    url: str, key: str, rate: float, seconds: float, out: Path, slo_ms: float | None
) -> subprocess.Popen[bytes]:
    args = [
        *pin(1),
        sys.executable,
        "-m",
        "gateway.cli",
        "load",
        "run",
        "--target",
        url,
        "--model",
        "chat",
        "--api-key",
        key,
        "--workload",
        "synthetic",
        "--input-tokens",
        "200",
        "--output-tokens",
        "64",
        "--range-ratio",
        "0",
        "--rate",
        str(rate),
        "--num-prompts",
        str(max(1, int(rate * seconds))),
        "--no-reset-prefix-cache",
        "--timeout",
        "120",
        "--out",
        str(out),
    ]
    if slo_ms is not None:
        args += ["--slo", f"ttft_ms={slo_ms:.0f}"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summary_of(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(path.read_text())["runs"][0]["summary"]
    return found


def share_good(summary: dict[str, Any]) -> float | None:
    sent = summary["completed"] + summary["failed"]
    if "request_goodput" not in summary or not sent:
        return None
    return float(summary["request_goodput"] * summary["duration"] / sent)


def scenario(
    work: Path,
    sims: list[str],
    scheduler: str,
    seconds: float,
    light_rate: float,
    slo_ms: float | None,
    light_priority: int = 0,
    heavy: bool = True,
    headroom: int = 0,
) -> dict[str, Any]:
    gateway, url = start_gateway(work, sims, scheduler, headroom)
    try:
        for tenant in ("heavy", "light"):
            admin(url, "/admin/tenants", {"name": tenant})
        heavy_key = admin(url, "/admin/keys", {"tenant": "heavy"})["key"]
        light = admin(url, "/admin/keys", {"tenant": "light", "priority": light_priority})["key"]
        light_out = work / f"light-{scheduler}-{headroom}.json"
        heavy_out = work / f"heavy-{scheduler}-{headroom}.json"
        runs = [load_run(url, light, light_rate, seconds, light_out, slo_ms)]
        if heavy:
            runs.append(load_run(url, heavy_key, light_rate * 10, seconds, heavy_out, None))
        for run in runs:
            run.wait(timeout=seconds * 6 + 120)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
    light_summary = summary_of(light_out)
    row = {
        "scheduler": scheduler,
        "headroom": headroom,
        "light_p50_ttft_ms": light_summary["median_ttft_ms"],
        "light_p99_ttft_ms": light_summary["p99_ttft_ms"],
        "light_goodput_share": share_good(light_summary),
        "light_failed": light_summary["failed"],
    }
    if heavy:
        heavy_summary = summary_of(heavy_out)
        row["heavy_p99_ttft_ms"] = heavy_summary["p99_ttft_ms"]
        row["heavy_completed"] = heavy_summary["completed"]
        row["heavy_failed"] = heavy_summary["failed"]
        row["output_tokens_per_s"] = (
            light_summary["output_throughput"] + heavy_summary["output_throughput"]
        )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--light-rate", type=float, default=6.0)
    parser.add_argument("--slo-factor", type=float, default=2.0)
    parser.add_argument(
        "--only",
        action="append",
        choices=["fifo", "fair_share", "priority"],
        help="run only these overload scenarios (repeatable; default: all)",
    )
    parser.add_argument(
        "--headroom",
        type=int,
        default=2,
        help="slots per backend held for urgent requests under fair_share and priority",
    )
    parser.add_argument("--out", default="load/results/fairness.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gateway-fairness-"))
    base = free_port()
    sim = subprocess.Popen(
        [
            *pin(1),
            sys.executable,
            "-m",
            "gateway.cli",
            "sim",
            "--replicas",
            "2",
            "--base-port",
            str(base),
            "--profile",
            "llama-3.1-8b-h100",
            "--set",
            "max_num_seqs=8",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sims = [f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"]
    rows = []
    try:
        for url in sims:
            wait_until_up(f"{url}/health")
        # The light tenant alone first: its unloaded figures, and from them the SLO.
        unloaded = scenario(work, sims, "fifo", args.seconds, args.light_rate, None, heavy=False)
        unloaded["scheduler"] = "unloaded"
        rows.append(unloaded)
        slo_ms = unloaded["light_p99_ttft_ms"] * args.slo_factor
        only = set(args.only or ["fifo", "fair_share", "priority"])
        if "fifo" in only:
            rows.append(scenario(work, sims, "fifo", args.seconds, args.light_rate, slo_ms))
            print(format_table([rows[-1]]), flush=True)
        for headroom in sorted({0, args.headroom}) if "fair_share" in only else []:
            row = scenario(
                work, sims, "fair_share", args.seconds, args.light_rate, slo_ms, headroom=headroom
            )
            rows.append(row)
            print(format_table([row]), flush=True)
        if "priority" in only:
            high = scenario(
                work,
                sims,
                "priority",
                args.seconds,
                args.light_rate,
                slo_ms,
                10,
                headroom=args.headroom,
            )
            high["scheduler"] = "priority (light in the high band)"
            rows.append(high)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
    for row in rows[1:]:
        row["light_p99_vs_unloaded"] = row["light_p99_ttft_ms"] / unloaded["light_p99_ttft_ms"]
    print(format_table(rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"slo_ttft_ms": slo_ms, "rows": rows, "started": time.time()}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
