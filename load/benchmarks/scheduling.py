"""What admission control costs when nothing is saturated: two gateway processes (one worker
each, both pinned to core 0, each idle while the other is measured) in front of the same static
upstream (nginx), with the same model group, plain in one and with a ``scheduling:`` section in
the other (``fair_share``, a cap far above the load), measured alternately with wrk at c=32
(each first in every other round); the medians of each gateway's CPU per request are compared
(as in ``overhead.sh``: nginx and wrk on core 1). The same request to the same group in both:
two groups in one process would also measure the difference between the groups.

Usage: bash load/benchmarks/scheduling.sh [--duration 10] [--rounds 4] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import format_table, free_port
from overhead import API_KEY, REQUEST, run_wrk, start_server, start_static_upstream, wait_http

CONFIG = """
server: {{host: 127.0.0.1, port: {port}, workers: 1}}
auth: {{api_keys: ["{key}"]}}
governance: {{usage: {{sinks: []}}}}
models:
  - name: bench
    backends: [{{url: "http://127.0.0.1:{upstream}", model: bench-model}}]
{scheduling}
"""
SCHEDULING = "    scheduling: {scheduler: {backend: fair_share}, max_in_flight: 100000}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default="load/results/scheduling.json")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            print(f"missing {tool}: run load/benchmarks/scheduling.sh", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="gateway-sched-bench-"))
    nginx, upstream, _ = start_static_upstream(work, 1)
    log = (work / "server.log").open("w")
    gateways, urls = {}, {}
    for name, scheduling in (("plain", ""), ("scheduled", SCHEDULING)):
        port = free_port()
        path = work / f"{name}.yaml"
        path.write_text(
            CONFIG.format(port=port, key=API_KEY, upstream=upstream, scheduling=scheduling)
        )
        gateways[name] = start_server(["-m", "gateway.cli", "serve", "--config", str(path)], 0, log)
        urls[name] = f"http://127.0.0.1:{port}/v1/chat/completions"
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "scheduled": []}
    try:
        for url in urls.values():
            wait_http(url)
            run_wrk(url, REQUEST, 32, 2, work, 1)  # warm its path
        names = ["plain", "scheduled"]
        for round_ in range(args.rounds):
            # Each goes first in every other round: a drift of the machine's speed over the run
            # (this is a shared 2-core box) falls on both alike.
            for name in names if round_ % 2 == 0 else names[::-1]:
                runs[name].append(
                    run_wrk(urls[name], REQUEST, 32, args.duration, work, 1, gateways[name].pid)
                )
    finally:
        for proc in (*gateways.values(), nginx):
            proc.terminate()
            proc.wait(20)
    row: dict[str, Any] = {"connections": 32, "rounds": args.rounds}
    for name, measured in runs.items():
        row[f"{name}_rps"] = statistics.median(r["rps"] for r in measured)
        row[f"{name}_cpu_us_per_req"] = statistics.median(r["cpu_us_per_req"] for r in measured)
    row["cpu_added_pct"] = (row["scheduled_cpu_us_per_req"] / row["plain_cpu_us_per_req"] - 1) * 100
    row["rps_ratio"] = row["scheduled_rps"] / row["plain_rps"]
    print(format_table([row]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"unsaturated": row, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
