"""``gateway node`` in a subprocess, as an operator runs it, with simulators as its engines."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import GATEWAY, free_port

SIM_ENGINE = [
    *GATEWAY,
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
"""An engine command for deployments: the simulator, serving as vLLM would."""


def deployment(name: str, group: str, memory_mib: float, **extra: Any) -> dict[str, Any]:
    """A deployment whose engines are simulators serving ``sim-model``."""
    return {
        "name": name,
        "model": "sim-model",
        "group": group,
        "memory_mib": memory_mib,
        "command": SIM_ENGINE,
        "startup_timeout_s": 60,
        **extra,
    }


def fake_gpus(*memory_mib: float, name: str = "NVIDIA H100 80GB HBM3") -> dict[str, Any]:
    return {
        "backend": "fake",
        "options": {"gpus": [{"name": name, "memory_mib": m} for m in memory_mib]},
    }


class NodeProcess:
    def __init__(self, proc: subprocess.Popen[str], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def output(self) -> str:
        """What the agent and its engines wrote so far."""
        return self.log.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.get("/status")[1])
        return found

    def engines(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.status()["engines"]}

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0
    ) -> dict[str, Any]:
        """Poll ``/status`` until ``predicate`` holds (bounded); fails with the last status."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(
                    f"node status never matched: {json.dumps(status)[:3000]}\n"
                    f"output: {self.output()[-3000:]}"
                )
            time.sleep(0.1)

    def wait_ready(self, count: int, timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
        """Wait until ``count`` engines are ready; returns them by name."""
        status = self.wait_for(
            lambda s: sum(e["state"] == "ready" for e in s["engines"]) == count, timeout_s
        )
        return {e["name"]: e for e in status["engines"] if e["state"] == "ready"}

    def terminate(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """SIGTERM and wait; returns the exit status and the output."""
        self.proc.terminate()
        self.proc.wait(timeout=timeout_s)
        return self.proc.returncode, self.output()


@contextmanager
def running_node(config: dict[str, Any], work: Path) -> Iterator[NodeProcess]:
    """`gateway node --config <config>` in a subprocess until the block ends (SIGTERM, then
    SIGKILL if it does not stop); yields it once its ``/health`` answers."""
    port = free_port()
    node = {**config["node"], "port": port}
    path = work / f"node-{port}.yaml"
    path.write_text(yaml.safe_dump({**config, "node": node}))
    log = work / f"node-{port}.log"
    with log.open("w") as out:
        # A file, not a pipe: the engines inherit it, and nobody reads a pipe while they run.
        proc = subprocess.Popen(
            [*GATEWAY, "node", "--config", str(path)],
            text=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
    agent = NodeProcess(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                agent.get("/health")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"node agent did not start: {agent.output()}") from None
                time.sleep(0.1)
        yield agent
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
