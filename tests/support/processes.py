"""``gateway serve`` in a subprocess, as an operator runs it (real processes, real signals)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

GATEWAY = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    *args: str, env: dict[str, str] | None = None, startup_s: float = 30.0
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`gateway serve ARGS` in a subprocess; yields it and its URL once /healthz answers, and
    stops it (SIGTERM, then SIGKILL) at the end."""
    port = free_port()
    proc = subprocess.Popen(
        [*GATEWAY, "serve", "--port", str(port), *args],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else ""
                    raise RuntimeError(f"gateway did not start: {out}") from None
                time.sleep(0.1)
        yield proc, url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> str:
    """Stop ``proc`` gracefully (SIGTERM; SIGKILL after 20 s); returns its output."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    out = ""
    if proc.stdout and not proc.stdout.closed:
        out = proc.stdout.read()
        proc.stdout.close()
    return out
