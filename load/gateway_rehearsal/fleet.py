"""The whole fleet on one machine: Redis, simulator replicas, the config published to the
shared store, N gateway replicas, and nginx in front of them.

:class:`Rehearsal` starts the parts in dependency order and waits for each to answer before the
next needs it; :meth:`Rehearsal.stop` stops them in reverse (the load balancer first, so no new
request reaches a replica that is draining; Redis last, so draining replicas can still settle
their limits), each with a bounded wait.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from gateway_sim.profiles import DEFAULT_PROFILE

from gateway_rehearsal.fleet_config import (
    HOST_VAR,
    NAME_VAR,
    fleet_config,
    replica_host,
    replica_names,
    write_fleet_config,
)
from gateway_rehearsal.nginx import nginx_conf, write_nginx_conf
from gateway_rehearsal.processes import (
    Child,
    RehearsalError,
    answers,
    free_port,
    kill_group,
    spawn,
    stop_all,
    wait_for,
)

GATEWAY = (sys.executable, "-m", "gateway.cli")
SIM_MODEL = "sim-model"
MAX_REPLICAS = 250  # one loopback address each, from 127.0.0.2
START_TIMEOUT_S = 120.0  # a cold start on a busy 2-core machine imports for a while


@dataclass(frozen=True, slots=True)
class RehearsalOptions:
    """What to start.

    Attributes:
        replicas: gateway replicas behind nginx.
        sims: simulator replicas (one ``gateway sim`` process); ignored with ``upstreams``.
        sim_profile: the simulators' engine profile (``instant``: no modelled latency).
        port: nginx's port on 127.0.0.1 (0: a free one).
        work_dir: where configs, logs, usage files and the ledger go (None: a temporary
            directory, removed at the end).
        master_key: the fleet's master key (None: a random one).
        upstreams: OpenAI-compatible servers to serve as group ``chat`` instead of simulators
            (the benchmark's static upstream), serving ``upstream_model``.
        upstream_model: the model name the upstreams serve.
        cache: group ``chat`` caches deterministic requests.
        gateway_cores: pin replica ``i`` to ``gateway_cores[i % len]`` (the benchmark).
        support_core: pin Redis, the simulators and nginx to this core (the benchmark).
    """

    replicas: int = 2
    sims: int = 2
    sim_profile: str = DEFAULT_PROFILE
    port: int = 8080
    work_dir: Path | None = None
    master_key: str | None = None
    upstreams: tuple[str, ...] = ()
    upstream_model: str = SIM_MODEL
    cache: bool = True
    gateway_cores: tuple[int, ...] = ()
    support_core: int | None = None


@dataclass(frozen=True, slots=True)
class FleetInfo:
    """A started fleet, as the banner and ``--ready-file`` show it.

    Attributes:
        url: the load balancer: what clients use.
        replica_urls: each replica, by name.
        sim_urls: the simulators (empty with upstreams).
        redis_url: the shared Redis.
        master_key: the fleet's master key.
        work_dir: its files; ``config``: the fleet config in it.
        usage_files: each replica's usage records (JSON lines).
        ledger: the roll-up's SQLite ledger.
        pids: every process the fleet started, by name.
        control_commands: the control-plane jobs as commands an operator can run...
        control_env: ...with these variables set (the master key and the fleet's key pepper).
    """

    url: str
    replica_urls: dict[str, str]
    sim_urls: list[str]
    redis_url: str
    master_key: str
    work_dir: str
    config: str
    usage_files: list[str]
    ledger: str
    pids: dict[str, int] = field(default_factory=dict)
    control_commands: dict[str, list[str]] = field(default_factory=dict)
    control_env: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class Rehearsal:
    """The fleet's processes; start it once, stop it once (``with`` does both).

    Args:
        options: what to start.
        cancel: set (by a signal handler) to abandon a start in progress.
    """

    def __init__(self, options: RehearsalOptions, cancel: threading.Event | None = None) -> None:
        if not 1 <= options.replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be between 1 and {MAX_REPLICAS}")
        if options.sims < 1 and not options.upstreams:
            raise ValueError("sims must be at least 1 without upstreams")
        self.options = options
        self.cancel = cancel or threading.Event()
        self._owns_dir = options.work_dir is None
        self.work_dir = options.work_dir or Path(tempfile.mkdtemp(prefix="gateway-rehearsal-"))
        self.logs = self.work_dir / "logs"
        self.master_key = options.master_key or f"sk-rehearsal-{secrets.token_urlsafe(12)}"
        # every replica and job hashes keys with the same pepper, or keys work on one only
        self.env = {
            "GATEWAY_MASTER_KEY": self.master_key,
            "GATEWAY_KEY_PEPPER": secrets.token_urlsafe(24),
        }
        self.redis: Child | None = None
        self.sim: Child | None = None
        self.replicas: dict[str, Child] = {}
        self.nginx: Child | None = None

    def __enter__(self) -> FleetInfo:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def children(self) -> list[Child]:
        """Every process started so far, in start order."""
        parts = [self.redis, self.sim, *self.replicas.values(), self.nginx]
        return [child for child in parts if child is not None]

    def exited(self) -> Child | None:
        """A process of the fleet that has exited, if any (the fleet is then broken)."""
        return next((child for child in self.children() if not child.running()), None)

    def start(self) -> FleetInfo:
        """Start every part and wait until the load balancer reaches a replica.

        Raises:
            RehearsalError: a part did not start (the message ends with its log), or the
                start was cancelled. What did start is left for :meth:`stop`.
        """
        opts = self.options
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.chmod(0o755)  # nginx's unprivileged worker reaches its temp dir below
        self.logs.mkdir(exist_ok=True)
        redis_url = self._start_redis()
        # the simulators, the publisher and the replicas import for seconds each: overlapped
        backends = list(opts.upstreams) or self._spawn_sims()
        names = replica_names(opts.replicas)
        hosts = [replica_host(i) for i in range(opts.replicas)]
        port = free_port(hosts)
        replica_urls = {n: f"http://{h}:{port}" for n, h in zip(names, hosts, strict=True)}
        config_path = self.work_dir / "fleet.yaml"
        config = fleet_config(
            work_dir=self.work_dir,
            port=port,
            redis_url=redis_url,
            backends=backends,
            backend_model=opts.upstream_model,
            replica_urls=list(replica_urls.values()),
            cache=opts.cache,
        )
        write_fleet_config(config_path, config)
        self._publish(config_path)
        self._start_replicas(names, hosts, config_path)
        if self.sim is not None:
            for backend in backends:
                self._wait(
                    partial(answers, f"{backend}/health"), f"the simulator at {backend}", self.sim
                )
        for name, child in self.replicas.items():
            self._wait(partial(answers, f"{replica_urls[name]}/readyz"), f"replica {name}", child)
        url = self._start_nginx([f"{host}:{port}" for host in hosts])
        usage_files = [f"{self.work_dir}/replicas/{name}/usage.jsonl" for name in names]
        return FleetInfo(
            url=url,
            replica_urls=replica_urls,
            sim_urls=[] if opts.upstreams else backends,
            redis_url=redis_url,
            master_key=self.master_key,
            work_dir=str(self.work_dir),
            config=str(config_path),
            usage_files=usage_files,
            ledger=f"{self.work_dir}/ledger.sqlite3",
            pids={child.name: child.pid for child in self.children()},
            control_commands=control_commands(config_path, usage_files),
            control_env=dict(self.env),
        )

    def stop(self) -> dict[str, int]:
        """Stop everything started, load balancer first and Redis last; each process's exit
        status by name. Removes the work directory if the rehearsal made it."""
        statuses: dict[str, int] = {}
        groups = (
            ([self.nginx], 10.0),
            (list(self.replicas.values()), 30.0),  # shutdown_grace_s 5, then the drain
            ([self.sim], 10.0),
            ([self.redis], 10.0),
        )
        try:
            for group, grace_s in groups:
                try:
                    statuses |= stop_all([c for c in group if c is not None], grace_s)
                except BaseException:
                    # A second Ctrl-C, or any failure: the rest must still go, at once.
                    for later, _ in groups:
                        for child in later:
                            if child is not None:
                                kill_group(child)
                    raise
        finally:
            if self._owns_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)
        return statuses

    def _start_redis(self) -> str:
        port = free_port()
        self.redis = spawn(
            "redis",
            [
                "redis-server",
                *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--dir", str(self.work_dir)),
            ],
            self.logs,
            core=self.options.support_core,
        )
        self._wait(partial(_redis_pings, port), "redis-server", self.redis)
        return f"redis://127.0.0.1:{port}/0"

    def _spawn_sims(self) -> list[str]:
        """Start the simulators (one ``gateway sim`` process); their URLs, not waited for."""
        count = self.options.sims
        first = free_port(count=count)
        self.sim = spawn(
            "sim",
            [
                *GATEWAY,
                "sim",
                *("--host", "127.0.0.1", "--port", str(first), "--replicas", str(count)),
                *("--profile", self.options.sim_profile, "--model", SIM_MODEL),
            ],
            self.logs,
            core=self.options.support_core,
        )
        return [f"http://127.0.0.1:{first + i}" for i in range(count)]

    def _wait(self, ready: Callable[[], bool], what: str, child: Child) -> None:
        wait_for(ready, what, [child], self.cancel, START_TIMEOUT_S)

    def _publish(self, config_path: Path) -> None:
        """``gateway control publish-config``: the replicas apply it as they start."""
        job = spawn(
            "publish-config",
            [*GATEWAY, "control", "publish-config", str(config_path), "--config", str(config_path)],
            self.logs,
            env=self.env,
        )
        try:
            wait_for(lambda: not job.running(), "publish-config", [], self.cancel, START_TIMEOUT_S)
        finally:
            stop_all([job], 5.0)
        if job.proc.returncode != 0:
            raise RehearsalError(
                f"publish-config failed ({job.proc.returncode}):\n{job.log_tail()}"
            )

    def _start_replicas(self, names: Sequence[str], hosts: Sequence[str], config: Path) -> None:
        """Start every replica on the one fleet config; each one's name and address come
        from its environment, and its usage file exists from the start (the roll-up reads
        it)."""
        cores = self.options.gateway_cores
        for i, (name, host) in enumerate(zip(names, hosts, strict=True)):
            replica_dir = self.work_dir / "replicas" / name
            replica_dir.mkdir(parents=True, exist_ok=True)
            (replica_dir / "usage.jsonl").touch()
            self.replicas[name] = spawn(
                f"gateway-{name}",
                [*GATEWAY, "serve", "--config", str(config)],
                self.logs,
                env={**self.env, NAME_VAR: name, HOST_VAR: host},
                core=cores[i % len(cores)] if cores else None,
            )

    def _start_nginx(self, replicas: Sequence[str]) -> str:
        port = self.options.port or free_port()
        directory = self.work_dir / "nginx"
        directory.mkdir(exist_ok=True)
        command = write_nginx_conf(directory, nginx_conf(directory, "127.0.0.1", port, replicas))
        self.nginx = spawn(
            "nginx", command, self.logs, core=self.options.support_core, stop_signal=signal.SIGQUIT
        )
        url = f"http://127.0.0.1:{port}"
        self._wait(partial(answers, f"{url}/readyz"), "nginx in front of the replicas", self.nginx)
        return url


def _redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def control_commands(config_path: Path, usage_files: Sequence[str]) -> dict[str, list[str]]:
    """The control-plane jobs over this fleet, as ``gateway control`` commands."""
    config = ["--config", str(config_path)]
    return {
        "health-sweep": ["gateway", "control", "health-sweep", *config],
        "usage-rollup": ["gateway", "control", "usage-rollup", *config, *usage_files],
        "publish-config": ["gateway", "control", "publish-config", str(config_path), *config],
        "list-config": ["gateway", "control", "publish-config", "--list", *config],
    }
