"""Helpers shared by the benchmark scripts: ports, CPU pinning, waiting, tables."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TWO_CORES = (os.cpu_count() or 1) >= 2


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int | None) -> list[str]:
    """``taskset`` arguments pinning a command to ``core`` (none on one core)."""
    return ["taskset", "-c", str(core)] if core is not None and TWO_CORES else []


def wait_until_up(url: str, timeout_s: float = 30) -> None:
    """Poll ``url`` with GET until it answers (any status below 500).

    Raises:
        OSError: it did not answer within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of dicts as a right-aligned text table (union of their keys as columns)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.1f}"
        return str(value)

    cells = [[cell(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)) for c in cells]
    return "\n".join(lines)


@contextmanager
def serve_gateway(config: dict[str, Any], core: int | None = 0) -> Iterator[str]:
    """One gateway worker for ``config`` (a mapping), pinned to ``core``."""
    with gateway_process(config, core) as (url, _):
        yield url


@contextmanager
def gateway_process(
    config: dict[str, Any], core: int | None = 0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As :func:`serve_gateway`, with the process (for its CPU time)."""
    port = free_port()
    config = {**config, "server": {"port": port}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump(config, f)
    proc = subprocess.Popen(
        [*pin(core), sys.executable, "-m", "gateway.cli", "serve", "--config", f.name],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.unlink(f.name)


def start_redis(core: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server without persistence on a free loopback port (pinned to ``core``), once it
    answers PING; returns the process and the port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *pin(core),
            "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        ping = subprocess.run(
            ["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True, timeout=5
        )
        if ping.stdout.strip() == "PONG":
            return proc, port
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)


def start_sim(core: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A ``gateway sim`` (instant profile) on a free loopback port, pinned to ``core``; returns
    the process and its URL (not yet waited for: :func:`wait_until_up` its ``/health``)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *pin(core),
            sys.executable,
            "-m",
            "gateway.cli",
            "sim",
            "--port",
            str(port),
            "--profile",
            "instant",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def stop(*procs: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM each process, then wait for it (killing it after ``timeout_s``)."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()


def missing_tools(script: str, tools: Sequence[str] = ("nginx", "wrk")) -> bool:
    """Whether a benchmark's tools are missing (then says which, and which script installs
    them)."""
    for tool in tools:
        if not shutil.which(tool):
            print(f"missing {tool}: run load/benchmarks/{script}", file=sys.stderr)
            return True
    return False


def write_result(path: str, result: dict[str, Any]) -> Path:
    """Write a benchmark's ``result`` as indented JSON to ``path`` (its folder made if needed)
    and say where; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return out
