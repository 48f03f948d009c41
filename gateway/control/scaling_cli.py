"""``gateway control scale-fleet``: read the fleet's load, decide each scaled group's replicas
and ask its fleet scaler (:func:`gateway.control.scaling.scale_fleet`); print one JSON line per
decision. ``--dry-run`` decides and prints without asking any scaler or changing the job's
state."""

from __future__ import annotations

import argparse
import json
import time

from gateway.control.cli_support import add_job_arguments, job_inputs, run_job
from gateway.control.parts import build_fleet_scalers
from gateway.control.scaling import read_loads, scale_fleet
from gateway.control.subcommands import Subcommand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="print the decisions without acting on them"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="the time bound of each metrics read (default: control.probe_timeout_s)",
    )


async def _scale(args: argparse.Namespace) -> int:
    async with job_inputs(args) as job:
        settings = job.settings
        scalers = build_fleet_scalers(settings, job.registries)
        try:
            loads = await read_loads(
                settings,
                timeout_s=args.timeout or settings.control.probe_timeout_s,
                registries=job.registries,
            )
            decisions = await scale_fleet(
                settings,
                loads=loads,
                scalers=scalers,
                store=job.store,
                now=time.time(),
                act=not args.dry_run,
            )
        finally:
            for scaler in scalers.values():
                await scaler.aclose()
    for decision in decisions:
        print(json.dumps({**decision.to_json(), "dry_run": args.dry_run}))
    return 0


def run(args: argparse.Namespace) -> int:
    return run_job(lambda: _scale(args))


SUBCOMMAND = Subcommand(
    name="scale-fleet",
    help="decide each model group's replicas from the fleet's load and ask its fleet scaler",
    add_arguments=add_arguments,
    run=run,
)
