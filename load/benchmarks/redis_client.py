"""Redis client micro-benchmark: N concurrent EVALSHA calls of a trivial script, through
redis-py's asyncio client (as the ``redis`` limiter used it: a BlockingConnectionPool, and
``asyncio.timeout`` around each call) and through the lean client of
:mod:`gateway_limits.resp` (writes coalesced per loop iteration while calls are in flight,
and written one by one).

Reports, per client, the CPU time of this Python process per call (``time.process_time``) and
calls per second, measured in the same run on one local redis-server (started on a free port,
pinned to another core where there are two, and stopped at the end). Rounds alternate the
clients; the median round is shown.

Usage: python load/benchmarks/redis_client.py [--calls 40000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from common import TWO_CORES, format_table, start_redis, stop
from gateway_limits.connection import Script, connect
from gateway_limits.resp import RespClient

# a script shaped like the limiter's calls: a few keys and arguments, a small table back
SCRIPT = Script("return {1, 0, 0, ARGV[1], '_'}")
KEYS = ["bench:{k:a}:rpm", "bench:{k:a}:tpm", "bench:{k:a}:budget"]
ARGV = ["60:1:0", "key:a", "1", "900"]
TIMEOUT_S = 5.0  # generous: this measures CPU, not outages (a busy box can be slow)

Call = Callable[[], Awaitable[Any]]


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server on the load core for the duration of the block; yields its URL."""
    proc, port = start_redis(1)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


async def measure(call: Call, calls: int, concurrency: int) -> dict[str, float]:
    """``calls`` calls by ``concurrency`` workers: CPU µs per call and calls per second."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us_per_call": cpu / calls * 1e6, "calls_per_s": calls / wall}


async def main(calls: int, concurrency: int, rounds: int) -> None:
    with redis_server() as url:
        # a connection per worker: beyond its max_connections (64 in the limiter) redis-py's
        # BlockingConnectionPool was seen to stall into timeouts; that is not what is measured
        redispy = connect(url, False, TIMEOUT_S, max(64, concurrency))
        coalesced = RespClient(url, TIMEOUT_S)
        one_by_one = RespClient(url, TIMEOUT_S, coalesce=False)

        async def redispy_call() -> Any:
            async with asyncio.timeout(TIMEOUT_S):
                return await redispy.evalsha(SCRIPT.sha, len(KEYS), *KEYS, *ARGV)

        clients: dict[str, Call] = {
            "redis-py asyncio": redispy_call,
            "resp (coalesced writes)": lambda: coalesced.evalsha(
                SCRIPT.sha, len(KEYS), *KEYS, *ARGV
            ),
            "resp (a write per call)": lambda: one_by_one.evalsha(
                SCRIPT.sha, len(KEYS), *KEYS, *ARGV
            ),
        }
        try:
            await coalesced.eval(SCRIPT.source, len(KEYS), *KEYS, *ARGV)  # caches the script
            results: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
            for call in clients.values():  # warm up: connections, caches
                await measure(call, min(calls, 2000), concurrency)
            for _ in range(rounds):
                for name, call in clients.items():
                    results[name].append(await measure(call, calls, concurrency))
        finally:
            await redispy.aclose()
            await coalesced.aclose()
            await one_by_one.aclose()
    rows = []
    base = statistics.median(r["cpu_us_per_call"] for r in results["redis-py asyncio"])
    for name, runs in results.items():
        cpu = statistics.median(r["cpu_us_per_call"] for r in runs)
        rows.append(
            {
                "client": name,
                "cpu µs/call": round(cpu, 1),
                "calls/s": round(statistics.median(r["calls_per_s"] for r in runs)),
                "cpu vs redis-py": f"{cpu / base:.2f}x",
            }
        )
    print(f"{calls} EVALSHA calls, {concurrency} concurrent, median of {rounds} rounds")
    print(format_table(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if TWO_CORES:
        os.sched_setaffinity(0, {0})  # this process on core 0, redis-server on core 1
    asyncio.run(main(args.calls, args.concurrency, args.rounds))
