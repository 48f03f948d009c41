"""``gateway control usage-rollup FILE...``: the roll-up over JSON-lines files (a ``jsonl``
usage sink's output, an archive's objects) with the ledger, archive, budget publishers and key
store of a gateway config, for teams without a cloud.

Each line is one item (its id ``<absolute path>:<line number>``), so a malformed line is
reported alone and every other line counts; lines go to :func:`usage_rollup` in batches of
:data:`BATCH_LINES`. Running it again over the same files counts nothing twice (the ledger
skips request ids it has counted) and replaces the archive's objects rather than adding to them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

from gateway.clock import SYSTEM_CLOCK
from gateway.config_loader import ConfigError, load_settings
from gateway.control.base import BudgetPublisher, RecordArchive, UsageLedger
from gateway.control.rollup import (
    BudgetLookup,
    KeyStoreBudgets,
    NoBudgets,
    RollupItem,
    RollupOutcome,
    usage_rollup,
)
from gateway.control.subcommands import Subcommand
from gateway.errors import ServiceUnavailableError
from gateway.governance.keystore import KeyStoreError
from gateway.governance.records import NANOS_PER_USD
from gateway.governance.runtime import build_key_store
from gateway.plugins import PluginError, build_registered, collect_registries, make_plugin_manager
from gateway.settings import Settings

BATCH_LINES = 1000
CONFIG_ENV = "GATEWAY_CONFIG"


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSON-lines files of records")
    parser.add_argument(
        "--config",
        help=f"the gateway config (control.ledger, control.archive, control.budget_publishers, "
        f"governance.key_store; default: ${CONFIG_ENV})",
    )


def _items(path: str) -> Iterator[list[RollupItem]]:
    """The non-blank lines of ``path`` as items, in batches of :data:`BATCH_LINES`."""
    name = str(Path(path).resolve())
    batch: list[RollupItem] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                batch.append(RollupItem(f"{name}:{n}", line))
            if len(batch) >= BATCH_LINES:
                yield batch
                batch = []
    if batch:
        yield batch


async def _roll_up(settings: Settings, files: list[str]) -> RollupOutcome:
    """Every line of ``files`` through :func:`usage_rollup`; the outcomes summed.

    Raises:
        ConfigError / PluginError: a plugin is unknown or rejects its options.
        ServiceUnavailableError / KeyStoreError: the ledger, archive or key store failed.
        OSError: a file could not be read.
    """
    control = settings.control
    registries = collect_registries(make_plugin_manager(settings.plugins.disabled))
    source = settings.source
    async with AsyncExitStack() as stack:
        ledger: UsageLedger = build_registered(
            registries.usage_ledgers,
            control.ledger.backend,
            control.ledger.options,
            source,
            "control.ledger",
        )
        stack.push_async_callback(ledger.aclose)
        archive: RecordArchive | None = None
        if control.archive is not None:
            archive = build_registered(
                registries.record_archives,
                control.archive.backend,
                control.archive.options,
                source,
                "control.archive",
            )
            stack.push_async_callback(archive.aclose)
        publishers: list[BudgetPublisher] = []
        for i, choice in enumerate(control.budget_publishers):
            publisher = build_registered(
                registries.budget_publishers,
                choice.backend,
                choice.options,
                source,
                f"control.budget_publishers[{i}]",
            )
            stack.push_async_callback(publisher.aclose)
            publishers.append(publisher)
        budgets: BudgetLookup = NoBudgets()
        built = build_key_store(settings, registries, SYSTEM_CLOCK)
        if built is not None:
            store, _ = built
            stack.push_async_callback(store.aclose)
            budgets = KeyStoreBudgets(store)
        total = RollupOutcome()
        for path in files:
            for batch in _items(path):
                outcome = await usage_rollup(
                    batch,
                    ledger=ledger,
                    archive=archive,
                    budgets=budgets,
                    publishers=publishers,
                    now=SYSTEM_CLOCK.time(),
                )
                total = RollupOutcome(
                    total.failed + outcome.failed,
                    total.counted + outcome.counted,
                    total.duplicates + outcome.duplicates,
                    total.crossings + outcome.crossings,
                    total.archived + outcome.archived,
                )
        return total


def _run(args: argparse.Namespace) -> int:
    path = args.config or os.environ.get(CONFIG_ENV)
    if not path:
        print(
            f"gateway control usage-rollup: error: no --config (or ${CONFIG_ENV})", file=sys.stderr
        )
        return 1
    try:
        outcome = asyncio.run(_roll_up(load_settings(path), list(args.files)))
    except (ConfigError, PluginError) as exc:
        print(f"gateway control usage-rollup: error: {exc}", file=sys.stderr)
        return 1
    except (ServiceUnavailableError, KeyStoreError, OSError) as exc:
        print(f"gateway control usage-rollup: error: {exc}", file=sys.stderr)
        return 2
    for item in outcome.failed:
        print(f"failed: {item} (malformed; see the log)", file=sys.stderr)
    for c in outcome.crossings:
        print(
            f"crossing: {c.scope} {c.window} {c.period} {c.threshold:g} "
            f"${c.spent_nanos / NANOS_PER_USD:.9f} of ${c.limit_nanos / NANOS_PER_USD:.9f}"
        )
    print(
        f"counted {outcome.counted}, duplicates {outcome.duplicates}, "
        f"failed {len(outcome.failed)}, crossings {len(outcome.crossings)}, "
        f"archived {len(outcome.archived)}"
    )
    return 1 if outcome.failed else 0


SUBCOMMAND = Subcommand(
    name="usage-rollup",
    help="fold JSON-lines usage records into the ledger and announce budget crossings",
    add_arguments=_add_arguments,
    run=_run,
)
