"""``gateway control <job>``: each control-plane job as a plain command, for teams without a
cloud (the Lambda handlers call the same functions).

A job's CLI module defines a :class:`Subcommand`; :func:`control_command` gathers them under
one ``gateway control`` command (registered by plugin ``gateway_control``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.commands import Command


@dataclass(frozen=True, slots=True)
class Subcommand:
    """One job: ``gateway control <name>``.

    Attributes:
        name: the job's name (``publish-config``).
        help: one line for ``gateway control --help``.
        add_arguments: declares its options.
        run: runs it with the parsed options; returns the exit status (0 done, 1 refused or
            failed with a message, 2 could not run: a store or service unreachable).
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def control_command(jobs: Sequence[Subcommand]) -> Command:
    """The ``gateway control`` command over ``jobs``."""
    by_name = {job.name: job for job in jobs}

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="job", metavar="JOB", required=True)
        for job in jobs:
            job.add_arguments(sub.add_parser(job.name, help=job.help, description=job.help))

    def run(args: argparse.Namespace) -> int:
        return by_name[args.job].run(args)

    return Command(
        help="run a control-plane job (publish-config, usage-rollup, ...) without a cloud",
        add_arguments=add_arguments,
        run=run,
    )
