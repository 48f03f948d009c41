"""Agent loops: the gateway's own time per step, and loops per second on one worker.

An agent (``looper``: the ``calculator`` tool, ``max_steps`` 10) runs a 5-step loop: the
simulated model (instant profile) calls the calculator in four successive steps, then answers.

- **Overhead per step (c=1)**: the same 5 model calls made directly, by a client-side loop that
  sends the simulator exactly what the gateway sends it and runs the same calculator, against
  one request for the agent through the gateway; the difference divided by the steps is the
  gateway's time per step (its whole request path per step, the in-process step dispatch and the
  loop; the client's one hop to the gateway is included). Also the gateway process's CPU time
  per step, and the gateway's own figure (``x-gateway-overhead-ms``: the run's time less its
  model and tool time, divided by the steps).
- **Throughput (c=32)**: agent runs per second (and steps per second) through one gateway
  worker pinned to one core, against plain chat requests through the same gateway.

Usage: bash load/benchmarks/agents.sh [--runs 200] [--seconds 10] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
from common import format_table, gateway_process, start_sim, stop, wait_until_up

STEPS = 5  # four tool steps, then the answer
EXPRESSIONS = ["6*7", "2**10", "sqrt(81)", "(3+4)*5"]
SCRIPT = " ".join(f"[[tools: calculator {json.dumps({'expression': e})}]]" for e in EXPRESSIONS)
MESSAGES = [{"role": "user", "content": SCRIPT}]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


async def direct_loop(session: aiohttp.ClientSession, sim: str, tools: list[Any]) -> float:
    """The 5 model calls made by a client-side loop straight to the simulator; seconds."""
    from gateway_tools.calculator import evaluate

    messages: list[dict[str, Any]] = list(MESSAGES)
    started = time.perf_counter()
    for _ in range(STEPS):
        body = {"model": "sim-model", "messages": messages, "tools": tools}
        async with session.post(f"{sim}/v1/chat/completions", json=body) as resp:
            answer = await resp.json()
        message = answer["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        if not calls:
            break
        messages = [*messages, {"role": "assistant", "content": None, "tool_calls": calls}]
        for call in calls:
            expression = json.loads(call["function"]["arguments"])["expression"]
            result = {"expression": expression, "result": evaluate(expression)}
            messages.append(
                {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)}
            )
    return time.perf_counter() - started


async def agent_run(session: aiohttp.ClientSession, gateway: str) -> tuple[float, float, int]:
    """One agent run; (seconds, the gateway's overhead in ms, steps)."""
    started = time.perf_counter()
    body = {"model": "looper", "messages": MESSAGES}
    async with session.post(f"{gateway}/v1/chat/completions", json=body) as resp:
        answer = await resp.json()
        overhead = float(resp.headers["x-gateway-overhead-ms"])
    seconds = time.perf_counter() - started
    steps = int(answer["agent"]["steps"])
    assert steps == STEPS, answer
    return seconds, overhead, steps


async def chat_once(session: aiohttp.ClientSession, gateway: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    async with session.post(f"{gateway}/v1/chat/completions", json=body) as resp:
        await resp.read()


async def closed_loop(concurrency: int, seconds: float, one: Any) -> int:
    """Runs of ``one()`` completed by ``concurrency`` clients in ``seconds``."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one()
            done += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done


async def measure(sim: str, gateway: str, runs: int, seconds: float, pid: int) -> dict[str, Any]:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": "Arithmetic.",
                "parameters": {
                    "type": "object",
                    "properties": {"expression": {"type": "string"}},
                    "required": ["expression"],
                },
            },
        }
    ]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(20):  # warm both paths
            await direct_loop(session, sim, tools)
            await agent_run(session, gateway)
        direct, via, reported = [], [], []
        cpu_before = cpu_seconds(pid)
        for _ in range(runs):  # interleaved, so drift hits both alike
            direct.append(await direct_loop(session, sim, tools))
            took, overhead, _ = await agent_run(session, gateway)
            via.append(took)
            reported.append(overhead)
        cpu_c1 = (cpu_seconds(pid) - cpu_before) / runs
        cpu_before = cpu_seconds(pid)
        loops = await closed_loop(32, seconds, lambda: agent_run(session, gateway))
        cpu_loops = cpu_seconds(pid) - cpu_before
        cpu_before = cpu_seconds(pid)
        chats = await closed_loop(32, seconds, lambda: chat_once(session, gateway))
        cpu_chats = cpu_seconds(pid) - cpu_before
    d50, v50 = statistics.median(direct), statistics.median(via)
    return {
        "steps_per_run": STEPS,
        "direct_loop_p50_ms": d50 * 1000,
        "agent_run_p50_ms": v50 * 1000,
        "overhead_per_step_ms": (v50 - d50) / STEPS * 1000,
        "reported_overhead_per_step_ms": statistics.median(reported) / STEPS,
        "gateway_cpu_per_step_ms": cpu_c1 / STEPS * 1000,
        "loops_per_s_c32": loops / seconds,
        "steps_per_s_c32": loops * STEPS / seconds,
        "gateway_cpu_share_loops": cpu_loops / seconds,
        "chat_req_per_s_c32": chats / seconds,
        "gateway_cpu_share_chat": cpu_chats / seconds,
        "cpu_per_step_c32_ms": cpu_loops / max(1, loops * STEPS) * 1000,
        "cpu_per_chat_c32_ms": cpu_chats / max(1, chats) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default="load/results/agents.json")
    args = parser.parse_args()
    sim, sim_url = start_sim(core=1)
    config = {
        "models": [{"name": "m", "backends": [{"url": sim_url, "model": "sim-model"}]}],
        "agents": [{"name": "looper", "model": "m", "tools": ["calculator"], "max_steps": 10}],
    }
    try:
        wait_until_up(f"{sim_url}/health")
        with gateway_process(config, core=0) as (gateway, proc):
            result = asyncio.run(measure(sim_url, gateway, args.runs, args.seconds, proc.pid))
    finally:
        stop(sim)
    print(format_table([result]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
