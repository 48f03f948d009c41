"""``gateway control health-sweep``: probe every backend once, store the hints, publish the
metrics, and print one JSON line per backend (:func:`gateway.control.health.health_sweep`).
Run it from cron (every minute) where there is no cloud scheduler."""

from __future__ import annotations

import argparse
import json
import time

from gateway.control.cli_support import add_job_arguments, job_inputs, run_job
from gateway.control.health import health_sweep
from gateway.control.parts import build_metric_publishers
from gateway.control.subcommands import Subcommand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="the time bound of each probe (default: control.probe_timeout_s)",
    )


async def _sweep(args: argparse.Namespace) -> int:
    async with job_inputs(args) as job:
        publishers = build_metric_publishers(job.settings, job.registries)
        try:
            hints = await health_sweep(
                job.settings,
                store=job.store,
                publishers=publishers,
                timeout_s=args.timeout or job.settings.control.probe_timeout_s,
                now=time.time(),
                registries=job.registries,
            )
        finally:
            for publisher in publishers:
                await publisher.aclose()
    for hint in hints:
        line = {
            "group": hint.group,
            "backend": hint.backend,
            "healthy": hint.healthy,
            "latency_ms": None if hint.latency_ms is None else round(hint.latency_ms, 1),
            "error": hint.error,
        }
        print(json.dumps(line))
    return 0


def run(args: argparse.Namespace) -> int:
    return run_job(lambda: _sweep(args))


SUBCOMMAND = Subcommand(
    name="health-sweep",
    help="probe every backend from outside the data plane; store the hints, publish metrics",
    add_arguments=add_arguments,
    run=run,
)
