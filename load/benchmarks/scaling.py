"""Scaling benchmark: N = 1 and N = 2 gateway replicas behind the rehearsal's nginx, governed.

Two rehearsal fleets run side by side (``gateway_rehearsal``), one of one replica and one of
two, each with its own Redis (keys, limiter, cache tier, control store) and the same static
upstream (nginx serving a fixed chat completion, as ``overhead.py``). Every request carries a
virtual key with RPM, TPM and a monthly budget, reserved in Redis by one script and settled off
the request path; usage goes to each replica's JSON-lines file. wrk posts chat requests to each
fleet's load balancer in turn, round after round, so both see the same moments of a shared
machine.

Per fleet: requests per second and latency; CPU per request of the replicas, the load balancer
and Redis (from ``/proc``: steadier than req/s where other work shares a core); Redis round
trips and commands per request (``INFO commandstats``), bytes per request to and from Redis
(``INFO stats``), Redis's own CPU per reservation script (``usec_per_call``); and each
replica's resident memory after the runs.

Pinning, with two cores: replica 1 of each fleet on core 0; replica 2 (N = 2 only) on core 1,
which it shares with wrk, both load balancers, both Redis servers and the upstream. So N = 2
gets one core and what the load tools leave of the other: the ratio is that, not 2.

Usage: bash load/benchmarks/scaling.sh [--duration 10] [--rounds 2] [--connections 64]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from common import TWO_CORES, format_table, missing_tools, write_result
from gateway_rehearsal.fleet import FleetInfo, Rehearsal, RehearsalOptions
from gateway_rehearsal.fleet_config import MODEL_GROUP
from overhead import (
    GOVERNED_KEY,
    REQUEST,
    cpu_seconds,
    redis_calls,
    redis_cli,
    run_wrk,
    start_static_upstream,
)

PATH = "/v1/chat/completions"
BODY = {**REQUEST, "model": MODEL_GROUP}
REPLICA_COUNTS = (1, 2)


def group_cpu_seconds(pgid: int) -> float:
    """CPU time of every process in process group ``pgid`` (nginx: its master and worker)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def redis_info(port: int, section: str) -> dict[str, str]:
    """``INFO <section>`` as a mapping."""
    pairs = (line.partition(":") for line in redis_cli(port, "INFO", section).splitlines())
    return {key: value.strip() for key, sep, value in pairs if sep and not key.startswith("#")}


def redis_commands(port: int) -> tuple[int, float]:
    """Commands Redis ran so far, those scripts ran included (not INFO or PING), and the
    reservation script's ``usec_per_call``."""
    total, usec = 0, 0.0
    for name, value in redis_info(port, "commandstats").items():
        stats = dict(f.split("=") for f in value.split(","))
        if name in ("cmdstat_info", "cmdstat_ping"):
            continue
        total += int(stats["calls"])
        if name == "cmdstat_evalsha":
            usec = float(stats["usec_per_call"])
    return total, usec


class Probe:
    """The counters of one fleet, read before and after a run."""

    def __init__(self, info: FleetInfo) -> None:
        self.replica_pids = [pid for name, pid in info.pids.items() if name.startswith("gateway-")]
        self.nginx_pgid = info.pids["nginx"]  # each child leads its own process group
        self.redis_pid = info.pids["redis"]
        self.redis_port = int(info.redis_url.rsplit(":", 1)[1].split("/")[0])

    def read(self) -> dict[str, float]:
        scripts, direct = redis_calls(self.redis_port)
        commands, _ = redis_commands(self.redis_port)
        stats = redis_info(self.redis_port, "stats")
        return {
            "gateway_cpu": sum(cpu_seconds(pid) for pid in self.replica_pids),
            "lb_cpu": group_cpu_seconds(self.nginx_pgid),
            "redis_cpu": cpu_seconds(self.redis_pid),
            "round_trips": scripts + direct,
            "commands": commands,
            "bytes_in": int(stats["total_net_input_bytes"]),
            "bytes_out": int(stats["total_net_output_bytes"]),
        }


def create_key(info: FleetInfo) -> str:
    """A governed virtual key, created through the fleet's first replica."""
    url = next(iter(info.replica_urls.values()))
    req = urllib.request.Request(
        f"{url}/admin/keys",
        data=json.dumps(GOVERNED_KEY).encode(),
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {info.master_key}",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(json.loads(resp.read())["key"])


def measure(
    probe: Probe, url: str, key: str, args: argparse.Namespace, work: Path, core: int | None
) -> dict[str, Any]:
    """One wrk run against ``url`` and the fleet's counters over it, per request."""
    before = probe.read()
    run = run_wrk(url, BODY, args.connections, args.duration, work, core, key=key)
    time.sleep(0.5)  # the replicas' last settlements reach Redis
    after = probe.read()
    n = run["requests"]
    delta = {name: after[name] - before[name] for name in before}
    return {
        "rps": run["rps"],
        "p50_ms": run["p50_us"] / 1000,
        "p99_ms": run["p99_us"] / 1000,
        "errors": run["errors"],
        "requests": n,
        "gateway_cpu_us_per_req": delta["gateway_cpu"] * 1e6 / n,
        "lb_cpu_us_per_req": delta["lb_cpu"] * 1e6 / n,
        "redis_cpu_us_per_req": delta["redis_cpu"] * 1e6 / n,
        "redis_round_trips_per_req": delta["round_trips"] / n,
        "redis_commands_per_req": delta["commands"] / n,
        "redis_bytes_in_per_req": delta["bytes_in"] / n,
        "redis_bytes_out_per_req": delta["bytes_out"] / n,
        # Redis's average over its life so far: the reservation script dominates it
        "redis_script_usec_per_call": redis_commands(probe.redis_port)[1],
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the rounds."""
    return {name: statistics.median(r[name] for r in runs) for name in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per fleet, alternated")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", default="load/results/scaling.json")
    args = parser.parse_args()
    if missing_tools("scaling.sh", ("nginx", "wrk", "redis-server", "redis-cli", "taskset")):
        return 2
    load_core = 1 if TWO_CORES else None
    gateway_cores = (0, 1) if TWO_CORES else ()
    work = Path(tempfile.mkdtemp(prefix="gateway-scaling-"))
    work.chmod(0o755)  # nginx's unprivileged workers read the upstream's files here
    upstream, upstream_port, _ = start_static_upstream(work, load_core)
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in REPLICA_COUNTS}
    memory: dict[int, list[float]] = {}
    try:
        with ExitStack() as stack:
            fleets = {}
            for n in REPLICA_COUNTS:
                rehearsal = Rehearsal(
                    RehearsalOptions(
                        replicas=n,
                        port=0,
                        work_dir=work / f"fleet-{n}",
                        upstreams=(f"http://127.0.0.1:{upstream_port}",),
                        upstream_model="bench-model",
                        cache=False,
                        gateway_cores=gateway_cores,
                        support_core=load_core,
                    )
                )
                info = stack.enter_context(rehearsal)
                fleets[n] = (Probe(info), f"{info.url}{PATH}", create_key(info))
            for _, url, key in fleets.values():  # warm up pools, caches and code paths
                run_wrk(url, BODY, args.connections, 2, work, load_core, key=key)
            for _ in range(args.rounds):
                for n, (probe, url, key) in fleets.items():
                    results[n].append(measure(probe, url, key, args, work, load_core))
            memory = {
                n: [rss_mib(pid) for pid in p.replica_pids] for n, (p, _, _) in fleets.items()
            }
    finally:
        upstream.terminate()
        upstream.wait(15)
        shutil.rmtree(work, ignore_errors=True)
    summary = {n: summarize(runs) for n, runs in results.items()}
    one, two = summary[1], summary[2]
    rows = [
        {
            "replicas": n,
            "req/s": round(s["rps"]),
            "p50 ms": s["p50_ms"],
            "p99 ms": s["p99_ms"],
            "errors": s["errors"],
            "gw cpu µs/req": round(s["gateway_cpu_us_per_req"]),
            "lb µs/req": round(s["lb_cpu_us_per_req"]),
            "redis µs/req": round(s["redis_cpu_us_per_req"]),
            "redis trips/req": round(s["redis_round_trips_per_req"], 3),
            "redis cmds/req": round(s["redis_commands_per_req"], 1),
            "redis B in/req": round(s["redis_bytes_in_per_req"]),
            "redis B out/req": round(s["redis_bytes_out_per_req"]),
            "script µs": round(s["redis_script_usec_per_call"]),
            "rss MiB/replica": round(max(memory[n]), 1),
        }
        for n, s in summary.items()
    ]
    print(format_table(rows))
    ratio = two["rps"] / one["rps"]
    print(
        f"N=2 / N=1: {ratio:.2f}x req/s ({args.rounds} rounds of {args.duration} s, c="
        f"{args.connections}); gateway CPU per request {one['gateway_cpu_us_per_req']:.0f} and "
        f"{two['gateway_cpu_us_per_req']:.0f} µs, so one core serves "
        f"{1e6 / one['gateway_cpu_us_per_req']:,.0f} governed req/s"
    )
    result = {
        "benchmark": "scaling",
        "cores": os.cpu_count(),
        "pinning": {
            "replica 1": 0 if TWO_CORES else None,
            "replica 2": 1 if TWO_CORES else None,
            "wrk, load balancers, Redis, upstream": load_core,
        },
        "duration_s": args.duration,
        "rounds": args.rounds,
        "connections": args.connections,
        "summary": {str(n): s for n, s in summary.items()},
        "runs": {str(n): r for n, r in results.items()},
        "rss_mib": {str(n): m for n, m in memory.items()},
        "ratio_rps_2_to_1": ratio,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
