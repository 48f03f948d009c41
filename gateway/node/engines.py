"""One engine's process, supervised: started in its own process group on its GPUs, watched
until healthy, restarted with back-off when it dies, and stopped so that nothing is left behind.

The life of an engine (:class:`EngineState`)::

    starting -> ready -> (crash) -> backoff -> starting ...
                      -> draining -> stopping -> stopped

- **No orphans.** Each engine is the leader of a new session (its own process group: vLLM
  spawns worker processes). Stopping sends SIGTERM to the whole group, then SIGKILL to whatever
  is left after ``stop_timeout_s``; a leader that died (a crash) has its group killed too
  before anything starts again. If the agent itself is killed (SIGKILL), the kernel kills each
  group's leader (``PR_SET_PDEATHSIG``, Linux); its workers notice their parent's death
  themselves (vLLM's do), which the agent cannot enforce.
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
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

from gateway.settings_node import PLACEHOLDERS

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


def _die_with(parent: int) -> Callable[[], None]:
    def arm() -> None:  # pragma: no cover - runs in the child, between fork and exec
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the agent died before the signal was armed
            os._exit(1)

    return arm


@dataclass
class Engine:
    """A supervised engine; :meth:`run` is its supervision task.

    Attributes:
        state: where it is in its life.
        pid: its process (the group leader), while one runs.
        restarts: how many times it was started again after a crash.
        started_at / ready_at: Unix times of the current process's start and readiness.
        last_exit: the last process's exit status (negative: killed by that signal).
        last_error: why it last went down, in words.
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
    last_error: str | None = None
    _process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _told: bool = field(default=False, repr=False)  # registered with the gateway, not undone
    _telling: asyncio.Future[None] | None = field(default=None, repr=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def serving(self) -> bool:
        return self.state is EngineState.READY

    async def run(self) -> None:
        """Start the engine and keep it running until :meth:`stop` (then return). Cancelled,
        it kills what it started before it ends."""
        try:
            await self._supervise()
        finally:
            if self._process is not None:  # its group, even if the leader already exited
                await asyncio.shield(self._kill_group(self._process))

    async def _supervise(self) -> None:
        backoff = self.supervision.restart_backoff_s
        while not self._stopping.is_set():
            self.state = EngineState.STARTING
            try:
                process = await self._spawn()
            except OSError as exc:  # the command is missing or not executable
                log.error("engine %s could not start: %s", self.spec.name, exc)
                self.last_error = f"{type(exc).__name__}: {exc}"
            else:
                if await self._wait_healthy(process):
                    # Registered first: `ready` means healthy and told to the gateway (best
                    # effort: a registration that failed is retried by the agent). A stop
                    # meanwhile waits for it, then deregisters.
                    self._told = True
                    self._telling = asyncio.ensure_future(self._call(self.on_ready, "on_ready"))
                    await asyncio.shield(self._telling)
                    self.state, self.ready_at = EngineState.READY, time.time()
                    await self._wait_exit_or_stop(process)
                    if self._stopping.is_set():
                        return
                    # Down from now on: nobody may count it ready or register it again.
                    self.state = EngineState.BACKOFF
                    if time.time() - self.ready_at >= STABLE_S:
                        backoff = self.supervision.restart_backoff_s
                    self._told = False
                    await self._call(self.on_down, "on_down")
                # The leader is gone or failed its start: whatever it left in its group (vLLM's
                # workers, holding GPU memory) goes too, before anything starts again.
                await self._kill_group(process)
                if self._stopping.is_set():
                    return
                self.last_exit = process.returncode
                self.last_error = f"exited with status {process.returncode}"
            log.warning(
                "engine %s down (%s); starting it again in %.1f s",
                self.spec.name,
                self.last_error,
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
        self._stopping.set()
        if self._telling is not None and not self._telling.done():
            await asyncio.shield(self._telling)  # its registration lands before we undo it
        told = self._told
        if drain is not None and told:
            self.state = EngineState.DRAINING
            await drain()
        self.state = EngineState.STOPPING
        if told:
            self._told = False
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
            preexec_fn=_die_with(os.getpid()) if sys.platform == "linux" else None,
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
            except RuntimeError:  # the agent's HTTP session closed: it is shutting down
                return False
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


_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def engine_argv(template: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """``template`` with each ``{placeholder}`` of :data:`PLACEHOLDERS` replaced by its value;
    every other brace is left as it is (JSON arguments such as ``--compilation-config
    '{"level": 3}'`` pass unchanged)."""
    return tuple(_PLACEHOLDER.sub(lambda m: values[m.group(1)], part) for part in template)
