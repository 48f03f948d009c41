"""Engine supervision with real processes: an engine that starts a worker (as vLLM does) and
serves ``/health``; crashes, restarts, stops in every state, and nothing left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.node.engines import Engine, EngineSpec, EngineState, Supervision, engine_argv

ENGINE = textwrap.dedent(
    """
    import http.server, subprocess, sys
    port, pids = int(sys.argv[1]), sys.argv[2]
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open(pids, "a") as f:
        f.write(f"{worker.pid}\\n")

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie is dead, only not reaped yet


class Calls:
    def __init__(self) -> None:
        self.ready: list[int | None] = []
        self.down: list[int | None] = []

    async def on_ready(self, engine: Engine) -> None:
        self.ready.append(engine.pid)

    async def on_down(self, engine: Engine) -> None:
        self.down.append(engine.pid)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def spec(tmp_path: Path, argv: tuple[str, ...] | None = None, timeout_s: float = 20) -> EngineSpec:
    port = free_port()
    script = tmp_path / "engine.py"
    script.write_text(ENGINE)
    return EngineSpec(
        name="chat-0",
        deployment="chat",
        group="chat",
        model="m",
        argv=argv or (sys.executable, str(script), str(port), str(tmp_path / "workers")),
        env={"CUDA_VISIBLE_DEVICES": "0"},
        host="127.0.0.1",
        port=port,
        gpus=(0,),
        memory_mib=1000,
        priority=0,
        health_path="/health",
        startup_timeout_s=timeout_s,
    )


def workers(tmp_path: Path) -> list[int]:
    path = tmp_path / "workers"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def wait_for(predicate: object, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.05)


pytestmark = pytest.mark.anyio

FAST = Supervision(restart_backoff_s=0.1, restart_backoff_max_s=0.4, stop_timeout_s=5)


async def test_a_crash_kills_the_group_restarts_and_stop_leaves_nothing(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    calls = Calls()
    engine = Engine(spec(tmp_path), FAST, http, calls.on_ready, calls.on_down)
    task = asyncio.create_task(engine.run())
    await wait_for(lambda: engine.state is EngineState.READY)
    first, [worker] = engine.pid, workers(tmp_path)
    assert first is not None
    assert calls.ready == [first]
    os.kill(first, signal.SIGKILL)  # the leader dies; its worker would live on
    await wait_for(lambda: engine.state is EngineState.READY and engine.pid != first)
    assert engine.restarts == 1
    assert engine.last_exit == -signal.SIGKILL
    assert calls.down == [first]
    await wait_for(lambda: not alive(worker), timeout_s=5)  # killed with the group
    second = engine.pid
    assert second is not None
    await engine.stop()
    await task
    assert engine.state is EngineState.STOPPED
    await wait_for(
        lambda: not any(alive(pid) for pid in (first, second, *workers(tmp_path))), timeout_s=5
    )
    assert calls.down == [first, second]


async def test_a_command_that_cannot_start_backs_off_and_tries_again(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    calls = Calls()
    missing = (str(tmp_path / "no-such-engine"),)
    engine = Engine(spec(tmp_path, missing), FAST, http, calls.on_ready, calls.on_down)
    task = asyncio.create_task(engine.run())
    await wait_for(lambda: engine.restarts >= 2)
    assert engine.state in (EngineState.BACKOFF, EngineState.STARTING)
    assert engine.last_error is not None
    assert "FileNotFoundError" in engine.last_error
    await engine.stop()
    await task
    assert calls.ready == []


async def test_stop_while_starting_kills_it_and_never_registers(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    calls = Calls()
    # Never healthy: it sleeps instead of serving.
    sleeper = (sys.executable, "-c", "import time; time.sleep(300)")
    engine = Engine(spec(tmp_path, sleeper), FAST, http, calls.on_ready, calls.on_down)
    task = asyncio.create_task(engine.run())
    await wait_for(lambda: engine.pid is not None)
    pid = engine.pid
    assert pid is not None
    await engine.stop()
    await task
    assert not alive(pid)
    assert (calls.ready, calls.down) == ([], [])


async def test_a_cancelled_supervisor_kills_its_engine(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    calls = Calls()
    engine = Engine(spec(tmp_path), FAST, http, calls.on_ready, calls.on_down)
    task = asyncio.create_task(engine.run())
    await wait_for(lambda: engine.state is EngineState.READY)
    pid = engine.pid
    assert pid is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(pid)
    # SIGKILL reached the whole group; the worker is gone once the kernel delivered it.
    await wait_for(lambda: not any(alive(w) for w in workers(tmp_path)), timeout_s=5)


async def test_not_healthy_in_time_counts_as_a_crash(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    calls = Calls()
    sleeper = (sys.executable, "-c", "import time; time.sleep(300)")
    engine = Engine(
        spec(tmp_path, sleeper, timeout_s=0.5), FAST, http, calls.on_ready, calls.on_down
    )
    task = asyncio.create_task(engine.run())
    await wait_for(lambda: engine.restarts >= 1)
    first_error = engine.last_error
    await engine.stop()
    await task
    assert first_error is not None
    assert calls.ready == []


def test_placeholders_are_filled_and_other_braces_pass() -> None:
    argv = engine_argv(
        ["vllm", "serve", "{model}", "--port", "{port}", "--compilation-config", '{"level": 3}'],
        {"model": "m", "port": "8100"},
    )
    assert argv == ("vllm", "serve", "m", "--port", "8100", "--compilation-config", '{"level": 3}')
