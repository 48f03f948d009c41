"""What the ``gateway control`` jobs' CLIs share: the options that say which config and which
store a job works on, and the mapping of failures to exit statuses.

A job reads its settings from ``--config FILE`` (default ``$GATEWAY_CONFIG``), whose
``control.store`` names the shared store unless ``--store-dir DIR`` gives a ``directory``
store. With ``--published`` (implied without a config file) the job works on the store's
current published config instead: what the fleet serves, as the cloud functions do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from gateway.config_loader import ConfigError, load_settings, settings_from_text
from gateway.control.base import ControlStore
from gateway.control.parts import build_control_store, plugin_registries
from gateway.errors import ServiceUnavailableError
from gateway.plugins import PluginError, Registries
from gateway.settings import Settings

CONFIG_ENV = "GATEWAY_CONFIG"


@dataclass(frozen=True, slots=True)
class JobInputs:
    """What a job runs on.

    Attributes:
        settings: the config (the file's, or the published one).
        registries: the plugins' registries.
        store: the shared store (closed when the job ends).
    """

    settings: Settings
    registries: Registries
    store: ControlStore


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``--config``, ``--store-dir`` and ``--published``."""
    parser.add_argument(
        "--config", metavar="FILE", help=f"the config file (default: ${CONFIG_ENV})"
    )
    parser.add_argument(
        "--store-dir",
        metavar="DIR",
        help="use the `directory` control store at DIR instead of the config's control.store",
    )
    parser.add_argument(
        "--published",
        action="store_true",
        help="work on the store's current published config (implied without a config file)",
    )


@asynccontextmanager
async def job_inputs(args: argparse.Namespace) -> AsyncIterator[JobInputs]:
    """The settings, registries and store that ``args`` name; the store is closed on exit.

    Raises:
        ConfigError: the file is invalid, no store is configured, nothing is published yet,
            or the published config is invalid.
        PluginError: a plugin failed to load.
        ServiceUnavailableError: the store cannot be reached.
    """
    path = args.config or os.environ.get(CONFIG_ENV)
    settings = load_settings(path) if path else Settings(source="<no config file>")
    registries = plugin_registries(settings)
    store = build_control_store(settings, registries, args.store_dir)
    try:
        if args.published or not path:
            version = await store.current_config()
            if version is None:
                raise ConfigError("the control store", None, "no config has been published yet")
            settings = settings_from_text(version.text, f"{version.source} (v{version.version})")
            registries = plugin_registries(settings)
        yield JobInputs(settings, registries, store)
    finally:
        await store.aclose()


def _fail(message: str, status: int) -> int:
    print(f"gateway control: error: {message}", file=sys.stderr)
    return status


def run_job(job: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``job`` to its exit status: 1 for a bad config (the message names the field), 2 when
    a plugin, the store or a service cannot be used."""
    try:
        return asyncio.run(job())
    except ConfigError as exc:
        return _fail(str(exc), 1)
    except (PluginError, ServiceUnavailableError) as exc:
        return _fail(str(exc), 2)
