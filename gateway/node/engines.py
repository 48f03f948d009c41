"""One engine's process, supervised: started in its own process group on its GPUs, watched
until healthy, restarted with back-off when it dies, and stopped so that nothing is left behind.

The life of an engine (:class:`EngineState`)::

    starting -> ready -> (crash) -> backoff -> starting ...
                      -> draining -> stopping -> stopped

- **No orphans.** Each engine is the leader of a new session (its own process group: vLLM
  spawns worker processes), and asks the kernel to kill it if the agent dies
  (``PR_SET_PDEATHSIG``, Linux). Stopping sends SIGTERM to the whole group, then SIGKILL to
  whatever is left after ``stop_timeout_s``.
- **Health.** ``starting`` ends when ``GET <health_path>`` answers 200 (``ready``), when the
  process exits, or after ``startup_timeout_s`` (the process group is then killed): both count
  as a crash.
- **Back-off.** A crashed engine waits ``restart_backoff_s``, doubling up to
  ``restart_backoff_max_s``, before it starts again; the wait goes back to the first after the
  engine was ready for a minute.
- **Callbacks.** ``on_ready`` after each start that became healthy (register it), ``on_down``
  after it stopped serving (deregister it); their failures are logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger("gateway.node")

STABLE_S = 60.0
"""How long an engine must stay ready for its restart back-off to start over."""

_PR_SET_PDEATHSIG = 1


class EngineState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    BACKOFF = "backoff"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """What to run.

    Attributes:
        name: the engine (``<deployment>-<n>``).
        deployment: its deployment.
        group: the model group it serves.
        model: the model name it answers to.
        argv: the command, placeholders filled.
        env: extra environment (``CUDA_VISIBLE_DEVICES`` included).
        host / port: where it listens.
        gpus: the GPU indices it runs on.
        memory_mib: GPU memory it was given on each.
        priority: its deployment's priority.
        health_path: its health check.
        startup_timeout_s: how long it may take to become healthy.
    """

    name: str
    deployment: str
    group: str
    model: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    host: str
    port: int
    gpus: tuple[int, ...]
    memory_mib: float
    priority: int
    health_path: str
    startup_timeout_s: float

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Supervision:
    """How engines are supervised (from ``node:``)."""

    restart_backoff_s: float = 1.0
    restart_backoff_max_s: float = 60.0
    stop_timeout_s: float = 30.0
    health_interval_s: float = 0.1


Callback = Callable[["Engine"], Awaitable[None]]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Engine:
    """A supervised engine; :meth:`run` is its supervision task.

    Attributes:
        state: where it is in its life.
        pid: its process (the group leader), while one runs.
        restarts: how many times it was started again after a crash.
        started_at / ready_at: Unix times of the current process's start and readiness.
        last_exit: the last process's exit status (negative: killed by that signal).
    """

    spec: EngineSpec
    supervision: Supervision
    http: aiohttp.ClientSession
    on_ready: Callback
    on_down: Callback
    state: EngineState = EngineState.STARTING
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None
    ready_at: float | None = None
    last_exit: int | None = None
    _process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def serving(self) -> bool:
        return self.state is EngineState.READY

    async def run(self) -> None:
        """Start the engine and keep it running until :meth:`stop` (then return)."""
        backoff = self.supervision.restart_backoff_s
        while not self._stopping.is_set():
            self.state = EngineState.STARTING
            process = await self._spawn()
            if await self._wait_healthy(process):
                self.state, self.ready_at = EngineState.READY, time.time()
                await self._call(self.on_ready, "on_ready")
                await self._wait_exit_or_stop(process)
                if self._stopping.is_set():
                    return
                if time.time() - self.ready_at >= STABLE_S:
                    backoff = self.supervision.restart_backoff_s
                await self._call(self.on_down, "on_down")
            else:
                await self._kill_group(process)
            if self._stopping.is_set():
                return
            self.last_exit = process.returncode
            log.warning(
                "engine %s exited (status %s); starting it again in %.1f s",
                self.spec.name,
                process.returncode,
                backoff,
            )
            self.state, self.pid = EngineState.BACKOFF, None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, self.supervision.restart_backoff_max_s)
            if not self._stopping.is_set():
                self.restarts += 1

    async def stop(self, drain: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stop serving: ``drain`` first (while the engine still answers), then SIGTERM to its
        process group, SIGKILL after ``stop_timeout_s``; returns when nothing of it is left."""
        was_serving = self.serving
        self._stopping.set()
        if drain is not None and was_serving:
            self.state = EngineState.DRAINING
            await drain()
        self.state = EngineState.STOPPING
        if was_serving:
            await self._call(self.on_down, "on_down")
        if self._process is not None:
            await self._kill_group(self._process)
        self.state, self.pid = EngineState.STOPPED, None

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = {**os.environ, **self.spec.env}
        self._process = await asyncio.create_subprocess_exec(
            *self.spec.argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=None,
            stderr=None,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.pid, self.started_at, self.ready_at = self._process.pid, time.time(), None
        log.info(
            "engine %s started: pid %d on GPUs %s, port %d",
            self.spec.name,
            self._process.pid,
            ",".join(map(str, self.spec.gpus)),
            self.spec.port,
        )
        return self._process

    async def _wait_healthy(self, process: asyncio.subprocess.Process) -> bool:
        """Poll the health check until 200, the process's exit, the start-up timeout or a
        stop (False for all but the first)."""
        url = f"{self.spec.url}{self.spec.health_path}"
        deadline = time.monotonic() + self.spec.startup_timeout_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            if process.returncode is not None:
                return False
            try:
                async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass  # not listening yet
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), self.supervision.health_interval_s)
        if not self._stopping.is_set():
            log.warning(
                "engine %s not healthy within %.0f s", self.spec.name, self.spec.startup_timeout_s
            )
        return False

    async def _wait_exit_or_stop(self, process: asyncio.subprocess.Process) -> None:
        exited = asyncio.ensure_future(process.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (exited, stopping):
                task.cancel()

    async def _kill_group(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM the process group, SIGKILL it after ``stop_timeout_s``; reap the leader."""
        pgid = process.pid  # the leader of its own session: its pid is the group's id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.supervision.stop_timeout_s)
        except TimeoutError:
            log.warning("engine %s ignored SIGTERM; killing it", self.spec.name)
        # Whatever the leader left in its group (workers) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        await process.wait()

    async def _call(self, callback: Callback, what: str) -> None:
        try:
            await callback(self)
        except Exception:
            log.exception("engine %s: %s failed", self.spec.name, what)


def engine_argv(
    template: Sequence[str],
    *,
    model: str,
    served_model: str,
    host: str,
    port: int,
    gpus: int,
    name: str,
) -> tuple[str, ...]:
    """``template`` with ``{model}``, ``{served_model}``, ``{host}``, ``{port}``, ``{gpus}`` and
    ``{name}`` filled in.

    Raises:
        ValueError: it names another placeholder.
    """
    values = {
        "model": model,
        "served_model": served_model,
        "host": host,
        "port": str(port),
        "gpus": str(gpus),
        "name": name,
    }
    try:
        return tuple(part.format_map(values) for part in template)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"unknown placeholder in the engine command: {exc}") from None
