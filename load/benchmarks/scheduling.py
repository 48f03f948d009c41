"""What admission control costs when nothing is saturated: one gateway worker, two model groups
on the same static upstream (nginx), one plain and one with a ``scheduling:`` section
(``fair_share``, a cap far above the load), measured alternately with wrk at c=32, the CPU per
request of the gateway process compared (as in ``overhead.sh``: the gateway pinned to core 0,
nginx and wrk to core 1).

Usage: bash load/benchmarks/scheduling.sh [--duration 10] [--rounds 3] [--out PATH]
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
  - name: scheduled
    backends: [{{url: "http://127.0.0.1:{upstream}", model: bench-model}}]
    scheduling: {{scheduler: {{backend: fair_share}}, max_in_flight: 100000}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="load/results/scheduling.json")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            print(f"missing {tool}: run load/benchmarks/scheduling.sh", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="gateway-sched-bench-"))
    nginx, upstream, _ = start_static_upstream(work, 1)
    port = free_port()
    (work / "gateway.yaml").write_text(CONFIG.format(port=port, key=API_KEY, upstream=upstream))
    log = (work / "server.log").open("w")
    gateway = start_server(
        ["-m", "gateway.cli", "serve", "--config", str(work / "gateway.yaml")], 0, log
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    plain, scheduled = REQUEST, {**REQUEST, "model": "scheduled"}
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "scheduled": []}
    try:
        wait_http(url)
        for body in (plain, scheduled):  # warm both paths
            run_wrk(url, body, 32, 2, work, 1)
        for _ in range(args.rounds):
            for name, body in (("plain", plain), ("scheduled", scheduled)):
                runs[name].append(run_wrk(url, body, 32, args.duration, work, 1, gateway.pid))
    finally:
        for proc in (gateway, nginx):
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
