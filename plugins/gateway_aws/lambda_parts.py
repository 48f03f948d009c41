"""What the Lambda handlers work with, built from the function's environment (set by
serverless.yml; see :mod:`gateway_aws.handlers` for every variable).

Everything is built by its registered name through the plugins' registries, exactly as a config
naming it would build it (``redis`` store, ``dynamodb`` ledger, ``s3`` archive, ``eventbridge``
and ``cloudwatch`` publishers; the key store is the published config's), so errors read like
config errors naming the variable. Nothing here is started or kept between invocations: each
invocation runs in its own event loop (``asyncio.run``) and closes what it built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from gateway.clock import SYSTEM_CLOCK
from gateway.config_loader import ConfigError, settings_from_text
from gateway.control.base import (
    BudgetPublisher,
    ControlStore,
    MetricPublisher,
    RecordArchive,
    UsageLedger,
)
from gateway.governance.keystore import KeyStore
from gateway.plugins import Registries, Registry, build_registered
from gateway.settings import Settings


def env(name: str, default: str | None = None) -> str:
    """The variable ``name`` (``default`` when unset or empty).

    Raises:
        ConfigError: it is unset and has no default (naming the variable).
    """
    value = os.environ.get(name) or default
    if value is None:
        raise ConfigError(f"${name}", None, "not set (see serverless.yml)")
    return value


def _build(registry: Registry[Any], name: str, options: Mapping[str, Any], var: str) -> Any:
    return build_registered(registry, name, options, f"${var}", registry.kind)


def control_store(registries: Registries) -> ControlStore:
    """The shared store: ``redis`` at ``$REDIS_URL``."""
    store: ControlStore = _build(
        registries.control_stores, "redis", {"url": env("REDIS_URL")}, "REDIS_URL"
    )
    return store


def ledger(registries: Registries) -> UsageLedger:
    """The ``dynamodb`` ledger in table ``$LEDGER_TABLE``."""
    built: UsageLedger = _build(
        registries.usage_ledgers, "dynamodb", {"table": env("LEDGER_TABLE")}, "LEDGER_TABLE"
    )
    return built


def archive(registries: Registries) -> RecordArchive | None:
    """The ``s3`` archive in ``$ARCHIVE_BUCKET`` under ``$ARCHIVE_PREFIX``; None when no
    bucket is set (raw records not kept)."""
    bucket = os.environ.get("ARCHIVE_BUCKET")
    if not bucket:
        return None
    options = {"bucket": bucket, "prefix": env("ARCHIVE_PREFIX", "usage/").rstrip("/")}
    built: RecordArchive = _build(registries.record_archives, "s3", options, "ARCHIVE_BUCKET")
    return built


def budget_publishers(registries: Registries) -> list[BudgetPublisher]:
    """``eventbridge`` on bus ``$EVENT_BUS`` (``default``)."""
    options = {"bus_name": env("EVENT_BUS", "default")}
    return [_build(registries.budget_publishers, "eventbridge", options, "EVENT_BUS")]


def metric_publishers(registries: Registries) -> list[MetricPublisher]:
    """``cloudwatch`` under namespace ``$METRIC_NAMESPACE`` (``Gateway/Control``)."""
    options = {"namespace": env("METRIC_NAMESPACE", "Gateway/Control")}
    return [_build(registries.metric_publishers, "cloudwatch", options, "METRIC_NAMESPACE")]


def key_store(registries: Registries, settings: Settings) -> KeyStore:
    """The published config's ``governance.key_store``, as the replicas build it (the pepper
    is not needed to read budgets).

    Raises:
        ConfigError: an unknown store, or options it rejects (naming the field).
    """
    choice = settings.governance.key_store
    store: KeyStore = build_registered(
        registries.key_stores,
        choice.backend,
        choice.options,
        settings.source,
        "governance.key_store",
        clock=SYSTEM_CLOCK,
        pepper=b"",
    )
    return store


async def published_settings(store: ControlStore) -> Settings | None:
    """The current published config, validated (None before the first publication).

    Raises:
        ConfigError: the published text no longer validates here (a variable it interpolates
            is missing from this function's environment).
    """
    current = await store.current_config()
    if current is None:
        return None
    return settings_from_text(current.text, f"{current.source} (version {current.version})")
