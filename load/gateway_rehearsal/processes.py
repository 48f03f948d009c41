"""The rehearsal's child processes and the waits on them.

Each child runs in a session of its own (its own process group): Ctrl-C at the terminal then
reaches only the supervisor, which stops the children in order, and a stop reaches a child's own
children too (nginx's workers). A stop is the child's graceful signal to the whole group, a
bounded wait, then SIGKILL: nothing outlives the rehearsal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("gateway.rehearsal")

POLL_S = 0.05
PRIVATE_PORTS_FROM = 20_000  # free ports are picked from here to the ephemeral range


class RehearsalError(RuntimeError):
    """A part of the fleet failed to start, or the start was interrupted."""


@dataclass(frozen=True, slots=True)
class Child:
    """One process of the fleet.

    Attributes:
        name: what the banner and the errors call it (``gateway-a``).
        proc: the process (the leader of its own process group).
        log_path: where its stdout and stderr go.
        stop_signal: the signal that stops it gracefully (nginx: SIGQUIT).
    """

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its log (for an error message)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    core: int | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> Child:
    """Start ``argv`` in a new session, its output appended to ``<log_dir>/<name>.log``.

    Args:
        env: variables added to this process's environment.
        core: pin it to this CPU core (``taskset``), for the benchmark.
    """
    log_path = log_dir / f"{name}.log"
    pin = ["taskset", "-c", str(core)] if core is not None else []
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [*pin, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
    return Child(name, proc, log_path, stop_signal)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(child.pid, sig)


def kill_group(child: Child) -> None:
    """SIGKILL ``child``'s whole process group now (nothing to wait for)."""
    _signal_group(child, signal.SIGKILL)


def stop_all(children: Sequence[Child], grace_s: float) -> dict[str, int]:
    """Stop ``children`` together: each one's graceful signal to its group, then SIGKILL for
    what is still running after ``grace_s``; returns each one's exit status by name."""
    for child in children:
        if child.running():
            _signal_group(child, child.stop_signal)
    deadline = time.monotonic() + grace_s
    statuses: dict[str, int] = {}
    for child in children:
        try:
            statuses[child.name] = child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killed", child.name, grace_s)
            _signal_group(child, signal.SIGKILL)
            try:
                statuses[child.name] = child.proc.wait(10)
            except subprocess.TimeoutExpired:  # unkillable for now (D state): go on
                log.error("%s did not exit after SIGKILL", child.name)
                statuses[child.name] = -int(signal.SIGKILL)
        # whatever the leader left behind in its group (a worker) goes with it
        _signal_group(child, signal.SIGKILL)
    return statuses


def wait_for(
    ready: Callable[[], bool],
    what: str,
    children: Sequence[Child],
    cancel: threading.Event,
    timeout_s: float,
) -> None:
    """Poll ``ready`` until it holds.

    Raises:
        RehearsalError: one of ``children`` exited (its log's tail is in the message),
            ``cancel`` was set, or ``timeout_s`` passed.
    """
    deadline = time.monotonic() + timeout_s
    while not ready():
        for child in children:
            if not child.running():
                raise RehearsalError(
                    f"{child.name} exited with status {child.proc.returncode} while waiting "
                    f"for {what}; the end of {child.log_path}:\n{child.log_tail()}"
                )
        if cancel.wait(POLL_S):
            raise RehearsalError(f"interrupted while waiting for {what}")
        if time.monotonic() > deadline:
            raise RehearsalError(f"{what}: not ready within {timeout_s:.0f} s")


def answers(url: str) -> bool:
    """Whether ``url`` answers a GET with a status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (our own http URLs)
            return int(resp.status) < 500
    except urllib.error.HTTPError as err:
        return err.code < 500
    except OSError:
        return False


def free_port(hosts: Sequence[str] = ("127.0.0.1",), count: int = 1) -> int:
    """A port free on every one of ``hosts``, with the ``count - 1`` ports after it free too.

    The port is chosen below the kernel's ephemeral range (``ip_local_port_range``), where no
    outgoing connection and no ``bind(port 0)`` of another program takes it meanwhile: a
    replica binds its port only after seconds of imports.

    Raises:
        RehearsalError: none found in a bounded number of tries.
    """
    low = _ephemeral_low() - count
    for _ in range(200):
        first = random.randint(PRIVATE_PORTS_FROM, low) if low > PRIVATE_PORTS_FROM else 0
        if first == 0:  # no room below the ephemeral range: take one the kernel offers
            with socket.socket() as probe:
                probe.bind((hosts[0], 0))
                first = int(probe.getsockname()[1])
        if first + count > 65_536:
            continue
        if all(_bindable(host, port) for host in hosts for port in range(first, first + count)):
            return first
    raise RehearsalError(f"no free port on {', '.join(hosts)}")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default when unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True
