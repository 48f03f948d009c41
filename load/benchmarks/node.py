"""The GPU node agent: its own cost, and how fast a scale order becomes serving capacity.

- **Agent CPU**: ``gateway node`` on 8 ``fake`` GPUs, reading them once a second, scraped on
  ``/metrics`` (and ``/status``) once a second, as Prometheus and the dashboard would, for
  ``--seconds``; its CPU time (``/proc/<pid>/stat``, user + system, children excluded) over the
  wall time. The same process with nothing scraping it and reading every 60 s, in the same run,
  is the floor (an asyncio process that waits).
- **Scale order to serving**: a gateway (its group starts with no backend), a node agent on two
  fake GPUs with simulator engines (``gateway sim``, instant profile), the shared store a
  directory; each trial writes a scale order one engine higher (as the ``node_agents`` fleet
  scaler does) and times until the gateway serves a chat request through the new engine; then
  an order one lower, timed until the engine is gone from the gateway. The serving time splits
  into the agent's part (order written to engine process started: the order poll and placement)
  and the engine's own start (process to healthy: the simulator's Python start-up here, loading
  weights for vLLM), from the agent's ``/status``.

Usage: bash load/benchmarks/node.sh [--seconds 30] [--trials 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from common import format_table, free_port, gateway_process, pin, wait_until_up

MASTER = "sk-bench-node"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_node(
    config: dict[str, Any], work: Path, core: int | None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = {**config, "node": {**config["node"], "port": port}}
    path = work / f"node-{port}.json"
    path.write_text(json.dumps(config))
    log = (work / f"node-{port}.log").open("w")
    proc = subprocess.Popen(
        [*pin(core), sys.executable, "-m", "gateway.cli", "node", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/health")
    return proc, url


def stop_node(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def get(url: str, headers: dict[str, str] | None = None) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
        body: bytes = r.read()
        return body


def bench_cpu(seconds: float, work: Path) -> dict[str, Any]:
    gpus = {"backend": "fake", "options": {"count": 8}}
    rows = {}
    for label, interval, scraped in (("idle floor", 60.0, False), ("8 GPUs, 1 Hz", 1.0, True)):
        proc, url = start_node({"node": {"gpus": gpus, "read_interval_s": interval}}, work, 0)
        try:
            time.sleep(2)  # start-up done
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            size = 0
            while time.monotonic() - t0 < seconds:
                if scraped:
                    size = len(get(f"{url}/metrics"))
                    get(f"{url}/status")
                time.sleep(1.0)
            cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
        finally:
            stop_node(proc)
        rows[label] = {"cpu_ms_per_s": cpu / wall * 1000, "metrics_bytes": size}
    added = rows["8 GPUs, 1 Hz"]["cpu_ms_per_s"] - rows["idle floor"]["cpu_ms_per_s"]
    return {
        "seconds": seconds,
        "idle_cpu_ms_per_s": rows["idle floor"]["cpu_ms_per_s"],
        "cpu_ms_per_s": rows["8 GPUs, 1 Hz"]["cpu_ms_per_s"],
        "added_cpu_ms_per_s": added,
        "core_share_pct": rows["8 GPUs, 1 Hz"]["cpu_ms_per_s"] / 10,
        "metrics_bytes": rows["8 GPUs, 1 Hz"]["metrics_bytes"],
    }


def backends(gw: str) -> set[str]:
    body = json.loads(get(f"{gw}/admin/backends", {"authorization": f"Bearer {MASTER}"}))
    return {b["name"] for b in body["backends"]}


def served_by(gw: str) -> str:
    request = urllib.request.Request(
        f"{gw}/v1/chat/completions",
        data=json.dumps(
            {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        ).encode(),
        headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return str(resp.headers["x-gateway-backend"])


def bench_scale(trials: int, work: Path) -> dict[str, Any]:
    from gateway_control.directory_store import DirectoryControlStore

    from gateway.node import orders

    store_path = work / "control"
    store = DirectoryControlStore(str(store_path))
    engine = [
        sys.executable,
        "-m",
        "gateway.cli",
        "sim",
        "--host",
        "{host}",
        "--port",
        "{port}",
        "--model",
        "{served_model}",
        "--profile",
        "instant",
    ]
    gateway = {"auth": {"master_key": MASTER}, "models": [{"name": "chat", "backends": []}]}
    ups, downs, to_spawn, to_healthy = [], [], [], []
    with gateway_process(gateway, core=0) as (gw, _):
        config = {
            "control": {"store": {"backend": "directory", "options": {"path": str(store_path)}}},
            "node": {
                "name": "bench",
                "engine_ports": free_port(),
                "gpus": {"backend": "fake", "options": {"count": 2}},
                "registrar": {
                    "backend": "gateway_admin",
                    "options": {"gateway_urls": [gw], "master_key": MASTER},
                },
                "order_interval_s": 0.5,
                "drain_s": 0.5,
                "deployments": [
                    {
                        "name": "chat",
                        "model": "sim-model",
                        "group": "chat",
                        "memory_mib": 20000,
                        "replicas": 1,
                        "max_replicas": 2,
                        "command": engine,
                    },
                ],
            },
        }
        proc, node = start_node(config, work, 1)
        try:
            wait_for(lambda: backends(gw) == {"bench-chat-0"})
            for _ in range(trials):
                before = backends(gw)
                started, ordered_at = time.perf_counter(), time.time()
                asyncio.run(orders.write_order(store, "chat", 2, ordered_at))
                # the new engine: listed by the gateway, and answering through it
                wait_for(partial(_new_one_serves, gw, before), 60, 0.02)
                ups.append(time.perf_counter() - started)
                [new] = [
                    e
                    for e in json.loads(get(f"{node}/status"))["engines"]
                    if e["backend"] not in before
                ]
                to_spawn.append(new["started_at"] - ordered_at)
                to_healthy.append(new["ready_at"] - new["started_at"])
                started = time.perf_counter()
                asyncio.run(orders.write_order(store, "chat", 1, time.time()))
                wait_for(partial(_backends_are, gw, before), 60, 0.02)
                downs.append(time.perf_counter() - started)
                # its process gone too, before the next order
                wait_for(lambda: len(json.loads(get(f"{node}/status"))["engines"]) == 1)
        finally:
            stop_node(proc)
    return {
        "trials": trials,
        "order_to_serving_p50_s": statistics.median(ups),
        "order_to_process_p50_s": statistics.median(to_spawn),
        "process_to_healthy_p50_s": statistics.median(to_healthy),
        "order_to_serving_max_s": max(ups),
        "order_to_deregistered_p50_s": statistics.median(downs),
    }


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60, step_s: float = 0.05) -> None:
    """Poll ``predicate`` until it holds.

    Raises:
        TimeoutError: it did not within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the node agent did not get there in time")
        time.sleep(step_s)


def _backends_are(gw: str, expected: set[str]) -> bool:
    return backends(gw) == expected


def _new_one_serves(gw: str, before: set[str]) -> bool:
    return any(_serves(gw, b) for b in backends(gw) - before)


def _serves(gw: str, backend: str) -> bool:
    """Whether round robin sends one of two requests to ``backend``."""
    return backend in {served_by(gw), served_by(gw)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--out", default="load/results/node.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gateway-node-bench-"))
    cpu = bench_cpu(args.seconds, work)
    print(format_table([cpu]), flush=True)
    scale = bench_scale(args.trials, work)
    print(format_table([scale]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cpu": cpu, "scale": scale}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
