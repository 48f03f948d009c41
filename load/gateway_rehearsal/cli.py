"""``gateway rehearse`` (also ``python -m gateway_rehearsal`` and ``scripts/rehearsal.sh``):
the fleet on one machine until Ctrl-C or SIGTERM.

It prints the load balancer's URL, the replicas', the master key and the control-plane
commands; runs the health sweep and the usage roll-up once, then every ``--control-every``
seconds; and watches its processes: if one exits, everything is stopped and the status is 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from gateway_sim.profiles import DEFAULT_PROFILE, PROFILES

from gateway.commands import Command
from gateway_rehearsal.control_jobs import ControlSchedule
from gateway_rehearsal.fleet import FleetInfo, Rehearsal, RehearsalOptions
from gateway_rehearsal.nginx import REPLICA_HEADER
from gateway_rehearsal.processes import RehearsalError

log = logging.getLogger("gateway.rehearsal")

WATCH_S = 0.2  # how often the supervisor looks at its processes and the schedule


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``gateway rehearse``."""
    parser.add_argument("--replicas", type=int, default=2, help="gateway replicas (default 2)")
    parser.add_argument("--sims", type=int, default=2, help="simulator replicas (default 2)")
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        metavar="PROFILE",
        help=f"the simulators' engine profile (default {DEFAULT_PROFILE}; "
        "`gateway sim --list-profiles`; instant: no modelled latency)",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="the load balancer's port (default 8080; 0: free)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="keep configs, logs, usage files and the ledger here (default: a temporary "
        "directory, removed at the end)",
    )
    parser.add_argument("--master-key", help="the fleet's master key (default: a random one)")
    parser.add_argument(
        "--control-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="run health-sweep and usage-rollup every SECONDS (default 60; 0: once at start)",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="once the fleet serves, write what it is (URLs, key, pids, commands) here as JSON",
    )


def banner(info: FleetInfo, every_s: float) -> str:
    """What the operator needs: URLs, the key, and the commands to try."""
    env = " ".join(f"{name}={shlex.quote(value)}" for name, value in info.control_env.items())
    lines = [
        f"gateway fleet rehearsal: {len(info.replica_urls)} replica(s) behind nginx",
        f"  load balancer  {info.url}   (answers carry `{REPLICA_HEADER}`)",
        *(f"  replica {name:<6} {url}" for name, url in info.replica_urls.items()),
        *(f"  simulator      {url}" for url in info.sim_urls),
        f"  redis          {info.redis_url}",
        f"  master key     {info.master_key}",
        f"  files          {info.work_dir}  (config: fleet.yaml, logs: logs/)",
        "try:",
        f"  curl {info.url}/v1/chat/completions -H 'authorization: Bearer {info.master_key}' "
        "-H 'content-type: application/json' "
        """-d '{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}'""",
        f"  GATEWAY_URL={info.url} GATEWAY_ADMIN_KEY={info.master_key} gateway keys create "
        "--model chat --budget 1:day",
        "control plane (health-sweep and usage-rollup run "
        + (f"every {every_s:g} s):" if every_s > 0 else "once):"),
        f"  export {env}",
        *(f"  {shlex.join(cmd)}" for cmd in info.control_commands.values()),
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Start the fleet, supervise it until a signal or a process exits, stop it."""
    logging.basicConfig(level=logging.INFO, format="rehearsal: %(message)s")
    stop = threading.Event()
    options = RehearsalOptions(
        replicas=args.replicas,
        sims=args.sims,
        sim_profile=args.profile,
        port=args.port,
        work_dir=args.dir,
        master_key=args.master_key,
    )
    try:
        rehearsal = Rehearsal(options, cancel=stop)
    except ValueError as exc:
        print(f"gateway rehearse: error: {exc}", file=sys.stderr)
        return 2
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    status = 0
    schedule: ControlSchedule | None = None
    try:
        info = rehearsal.start()
        print(banner(info, args.control_every), flush=True)
        if args.ready_file is not None:
            _write_atomically(args.ready_file, info.to_json())
        schedule = ControlSchedule(
            info.control_commands, args.control_every, rehearsal.logs, rehearsal.env
        )
        while not stop.wait(WATCH_S):
            exited = rehearsal.exited()
            if exited is not None:
                log.error(
                    "%s exited with status %s; stopping the fleet. The end of its log:\n%s",
                    exited.name,
                    exited.proc.returncode,
                    exited.log_tail(),
                )
                status = 1
                break
            schedule.tick()
        else:
            log.info("stopping the fleet")
    except RehearsalError as exc:
        log.error("%s", exc)
        status = 1
    finally:
        if schedule is not None:
            schedule.stop()
        statuses = rehearsal.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped: %s", ", ".join(_ended(name, code) for name, code in statuses.items()))
    return status


def _ended(name: str, status: int) -> str:
    """``gateway-a (SIGTERM)``, ``redis (exit 0)``: how a process ended."""
    return f"{name} ({signal.Signals(-status).name if status < 0 else f'exit {status}'})"


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the whole file or none (a temporary file renamed over it)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


REHEARSE_COMMAND = Command(
    help="start Redis, N gateway replicas behind nginx, simulators and the control jobs",
    add_arguments=add_arguments,
    run=run,
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway_rehearsal``: the same as ``gateway rehearse``."""
    parser = argparse.ArgumentParser(prog="gateway rehearse", description=REHEARSE_COMMAND.help)
    add_arguments(parser)
    return run(parser.parse_args(argv))
