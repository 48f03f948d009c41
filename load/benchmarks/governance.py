"""Governance accuracy across replicas: two gateway processes sharing one redis-server.

- **RPM accuracy**: one virtual key with an RPM limit, hammered through both replicas at once;
  the requests admitted against what GCRA allows (the burst plus the refill over the run).
- **Budget overshoot**: one key with a small monthly budget, 100 concurrent clients spread over
  both replicas; the spend the shared limiter settled against the budget, and the overshoot
  against one request's worst-case estimate.

Upstream: the simulator (instant profile). Each gateway is one worker.

Usage: bash load/benchmarks/governance.sh [--seconds 5] [--rpm 1200] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    missing_tools,
    serve_gateway,
    start_redis,
    start_sim,
    stop,
    wait_until_up,
    write_result,
)

MASTER = "sk-bench-master"
PRICE = {"input_per_mtok": 100.0, "output_per_mtok": 300.0}  # dear, so a small budget binds
OUTPUT_TOKENS = 20


def post(url: str, body: Any, key: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def get(url: str, key: str) -> Any:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def chat(url: str, key: str) -> int:
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": OUTPUT_TOKENS,
        "ignore_eos": True,
    }
    return post(f"{url}/v1/chat/completions", body, key)[0]


def create_key(url: str, **fields: Any) -> dict[str, Any]:
    status, data = post(f"{url}/admin/keys", fields, MASTER)
    if status != 201:
        raise RuntimeError(f"creating a key failed: {status} {data}")
    return dict(data)


def rpm_accuracy(urls: list[str], rpm: int, seconds: float, workers: int) -> dict[str, Any]:
    key = create_key(urls[0], rpm=rpm)["key"]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + seconds

    def worker(i: int) -> None:
        while time.monotonic() < deadline:
            status = chat(urls[i % len(urls)], key)
            with lock:
                statuses[status] += 1

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))
    elapsed = time.monotonic() - start
    allowed = rpm + rpm / 60 * elapsed
    return {
        "rpm": rpm,
        "seconds": round(elapsed, 2),
        "requests": sum(statuses.values()),
        "admitted": statuses[200],
        "refused_429": statuses[429],
        "other_statuses": {s: n for s, n in statuses.items() if s not in (200, 429)},
        "allowed": round(allowed, 1),
        "error_pct": round(100 * (statuses[200] - allowed) / allowed, 2),
    }


def budget_overshoot(urls: list[str], usd: float, clients: int) -> dict[str, Any]:
    created = create_key(urls[0], budgets=[{"usd": usd, "window": "month"}])
    with ThreadPoolExecutor(clients) as pool:
        statuses = Counter(
            pool.map(lambda i: chat(urls[i % 2], created["key"]), range(3 * clients))
        )
    time.sleep(1.0)  # the replicas' last settlements
    shown = get(f"{urls[1]}/admin/keys/{created['id']}", MASTER)
    (rule,) = [r for r in shown["usage"]["limits"] if r["kind"] == "budget"]
    spent = float(rule["spent_usd"])
    # One request's real cost (the simulator counts 8 prompt tokens for this body).
    one = (8 * PRICE["input_per_mtok"] + OUTPUT_TOKENS * PRICE["output_per_mtok"]) / 1e6
    return {
        "budget_usd": usd,
        "clients": clients,
        "requests": sum(statuses.values()),
        "admitted": statuses[200],
        "refused_429": statuses[429],
        "spent_usd": spent,
        "overshoot_usd": round(max(0.0, spent - usd), 9),
        "left_unspent_usd": round(max(0.0, usd - spent), 9),
        "one_request_usd": one,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rpm", type=int, default=1200)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--out", default="load/results/governance.json")
    args = parser.parse_args()
    if missing_tools("governance.sh", ("redis-server",)):
        return 2
    work = Path(tempfile.mkdtemp(prefix="gateway-gov-"))
    redis, redis_port = start_redis()
    sim, sim_url = start_sim()
    os.environ["GATEWAY_KEY_PEPPER"] = "bench-pepper-shared-by-both"
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    try:
        wait_until_up(f"{sim_url}/health")

        def config(name: str) -> dict[str, Any]:
            return {
                "auth": {"master_key": MASTER},
                "governance": {
                    "data_dir": str(work / name),
                    "key_store": {"backend": "redis", "options": {"url": redis_url}},
                    "limiter": {"backend": "redis", "options": {"url": redis_url}},
                },
                "models": [
                    {
                        "name": "chat",
                        "backends": [
                            {
                                "url": sim_url,
                                "model": "sim-model",
                                "price": PRICE,
                            }
                        ],
                    }
                ],
            }

        with serve_gateway(config("a"), core=0) as a, serve_gateway(config("b"), core=1) as b:
            rpm = rpm_accuracy([a, b], args.rpm, args.seconds, args.workers)
            budget = budget_overshoot([a, b], args.budget, args.clients)
    finally:
        stop(sim, redis)
    print(
        f"RPM limit across two replicas: {rpm['admitted']} admitted of {rpm['requests']} "
        f"against {rpm['allowed']} allowed ({rpm['rpm']} rpm over {rpm['seconds']} s): "
        f"error {rpm['error_pct']:+.2f}%"
    )
    print(
        f"budget ${budget['budget_usd']} under {budget['clients']} concurrent clients on two "
        f"replicas: spent ${budget['spent_usd']:.6f}, overshoot ${budget['overshoot_usd']:.6f} "
        f"(one request costs ${budget['one_request_usd']:.6f}), "
        f"{budget['admitted']} admitted, {budget['refused_429']} refused"
    )
    result = {
        "benchmark": "governance",
        "rpm": rpm,
        "budget": budget,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
