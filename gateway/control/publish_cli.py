"""``gateway control publish-config``: publish a config file to the shared store (or list the
versions kept, or roll back to one), as the S3-triggered function does in the cloud.

The store is ``--store-url`` (``redis``), ``--store-dir`` (``directory``), or the
``control.store`` of the ``--config`` file; it is built through the registered control stores.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from gateway.config_loader import ConfigError, load_settings
from gateway.control.base import ConfigVersion, ControlStore
from gateway.control.publish import PublishOutcome, publish_config, rollback
from gateway.control.subcommands import Subcommand
from gateway.errors import ServiceUnavailableError
from gateway.plugins import PluginError, build_registered, collect_registries, make_plugin_manager


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="the YAML config file to publish")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--store-url", help="a redis:// URL: the `redis` control store")
    where.add_argument("--store-dir", help="a directory: the `directory` control store")
    parser.add_argument(
        "--config", help="a gateway config file whose `control.store` is the store to use"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list the versions kept")
    action.add_argument("--rollback", type=int, metavar="N", help="publish version N again")


def open_store(args: argparse.Namespace) -> ControlStore:
    """The store the options name.

    Raises:
        ConfigError: none is named, or its options are refused.
        PluginError: the plugins could not be loaded.
    """
    if args.store_url:
        backend, options, source = "redis", {"url": args.store_url}, "--store-url"
    elif args.store_dir:
        backend, options, source = "directory", {"path": args.store_dir}, "--store-dir"
    elif args.config:
        choice = load_settings(args.config).control.store
        if choice is None:
            raise ConfigError(args.config, "control.store", "no control store is configured")
        backend, options, source = choice.backend, choice.options, args.config
    else:
        raise ConfigError(
            "gateway control publish-config",
            None,
            "name a store: --store-url, --store-dir, or --config with `control.store`",
        )
    registries = collect_registries(make_plugin_manager())
    store: ControlStore = build_registered(
        registries.control_stores, backend, options, source, "control.store"
    )
    return store


def _line(version: ConfigVersion, current: int) -> str:
    at = datetime.fromtimestamp(version.published_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    mark = "*" if version.version == current else " "
    return f"{mark} {version.version:>6}  {at}  {version.digest[:12]}  {version.source}"


def _report(outcome: PublishOutcome) -> int:
    if outcome.version is None:
        for error in outcome.errors:
            print(f"gateway: error: {error}", file=sys.stderr)
        return 1
    v = outcome.version
    print(f"published version {v.version} ({v.digest[:12]}) from {v.source}")
    return 0


async def _run(args: argparse.Namespace, store: ControlStore, text: str | None) -> int:
    try:
        if args.list:
            current = await store.current_version()
            for version in await store.config_versions(limit=1_000):
                print(_line(version, current))
            return 0
        if args.rollback is not None:
            return _report(await rollback(store, args.rollback))
        assert text is not None  # a FILE is named when neither --list nor --rollback is
        return _report(await publish_config(text, args.file, store))
    finally:
        await store.aclose()


def run(args: argparse.Namespace) -> int:
    """Publish, list or roll back; 0 done, 1 refused (the errors printed), 2 could not run."""
    if not (args.list or args.rollback is not None or args.file):
        print("gateway: error: name a FILE to publish, or --list, or --rollback N", file=sys.stderr)
        return 2
    text = None
    if not (args.list or args.rollback is not None):
        try:
            with open(args.file, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            print(
                f"gateway: error: {args.file}: cannot read the file ({exc.strerror})",
                file=sys.stderr,
            )
            return 1
    try:
        store = open_store(args)
    except (ConfigError, PluginError) as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, store, text))
    except ServiceUnavailableError as exc:
        print(f"gateway: error: {exc.message}", file=sys.stderr)
        return 2


SUBCOMMAND = Subcommand(
    name="publish-config",
    help="validate a config file and publish it to the shared store (or --list, --rollback N)",
    add_arguments=_add_arguments,
    run=run,
)
