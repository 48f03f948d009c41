"""Real redis-servers on free loopback ports: one (:class:`RedisServer`), or a 3-shard Redis
Cluster (:class:`RedisClusterServers`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (``port + 10000``) is free and valid too."""
    for _ in range(200):
        port = _free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """``redis-server`` without persistence; ``stop`` and ``start`` keep the port."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/test.sh installs it)")
        self.binary = binary
        self.port = port or _free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


class RedisClusterServers:
    """A Redis Cluster of ``size`` primaries (no replicas) on loopback; ``url`` is a startup
    node. Its node files live in a temporary directory removed by :meth:`stop`."""

    def __init__(self, size: int = 3) -> None:
        self.dir = tempfile.mkdtemp(prefix="redis-cluster-")
        self.nodes: list[RedisServer] = []
        for _ in range(size):
            port = _free_cluster_port()
            conf = f"{self.dir}/nodes-{port}.conf"
            extra = ("--cluster-enabled", "yes", "--cluster-config-file", conf, "--dir", self.dir)
            self.nodes.append(RedisServer(port, extra))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        for node in self.nodes:
            while (
                b"cluster_state:ok"
                not in subprocess.run(
                    ["redis-cli", "-p", str(node.port), "cluster", "info"],
                    capture_output=True,
                    timeout=5,
                ).stdout
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster did not become ok")
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def running_redis_cluster(size: int = 3) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(size)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
