"""The control plane's scheduled jobs, run as the commands a cron job would run.

``health-sweep`` and ``usage-rollup`` (``gateway control ...``) run one after the other, every
``every_s`` seconds from the end of the previous round, each as a child process with its output
appended to ``<logs>/control.log``. The supervisor calls :meth:`ControlSchedule.tick` from its
loop: it never blocks, so a signal is answered while a job runs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from gateway_rehearsal.processes import Child, spawn, stop_all

log = logging.getLogger("gateway.rehearsal")

SCHEDULED = ("health-sweep", "usage-rollup")
JOB_TIMEOUT_S = 120.0


class ControlSchedule:
    """Runs the scheduled jobs of ``commands`` in rounds.

    Args:
        commands: the jobs by name, as ``gateway control`` command lines.
        every_s: the pause between the end of a round and the start of the next; 0: one round.
        logs: the directory of ``control.log``.
        env: the jobs' environment (the master key and the key pepper).
        runner: what runs a command line in place of its ``gateway``: this interpreter's
            ``gateway.cli``.
    """

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        every_s: float,
        logs: Path,
        env: Mapping[str, str],
        runner: Sequence[str] = (sys.executable, "-m", "gateway.cli"),
    ) -> None:
        self.commands = {name: list(commands[name]) for name in SCHEDULED}
        self.every_s = every_s
        self.logs = logs
        self.env = dict(env)
        self.runner = list(runner)
        self.rounds = 0
        self._queue: list[str] = []
        self._running: Child | None = None
        self._started_at = 0.0
        self._next_round: float | None = time.monotonic()  # None: no more rounds

    def tick(self) -> None:
        """Reap a finished job, start the next one when it is due; never waits."""
        now = time.monotonic()
        if self._running is not None:
            if self._running.running():
                if now - self._started_at > JOB_TIMEOUT_S:
                    log.warning("%s ran past %.0f s: stopped", self._running.name, JOB_TIMEOUT_S)
                    stop_all([self._running], 5.0)
                return
            if self._running.proc.returncode != 0:
                log.warning(
                    "a control job exited with status %d (see %s)",
                    self._running.proc.returncode,
                    self._running.log_path,
                )
            self._running = None
            if not self._queue:
                self.rounds += 1
                self._next_round = now + self.every_s if self.every_s > 0 else None
        if not self._queue and self._next_round is not None and now >= self._next_round:
            self._queue = list(SCHEDULED)
            self._next_round = None  # set again when the round ends
        if self._queue:
            _, *args = self.commands[self._queue.pop(0)]
            with (self.logs / "control.log").open("a") as out:
                out.write(f"== {time.strftime('%H:%M:%S')} gateway {' '.join(args)}\n")
            self._running = spawn("control", [*self.runner, *args], self.logs, env=self.env)
            self._started_at = now

    def stop(self) -> None:
        """Stop the job in progress, if any."""
        if self._running is not None:
            stop_all([self._running], 5.0)
            self._running = None
