"""The CLI command contract, registered through ``register_commands``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Command:
    """A ``gateway <name>`` subcommand.

    Attributes:
        help: one line shown by ``gateway --help``.
        add_arguments: declares the command's options on its argparse sub-parser.
        run: executes the command with the parsed options; returns the process exit status.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
