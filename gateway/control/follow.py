"""The config source that follows the shared store: a replica applies each config version
published to ``control.store`` live, beside the file it started from.

The follower polls ``current_version()`` (one cheap read) every ``control.poll_interval_s``; a
new version is fetched, validated with the config loader and applied with
:func:`gateway.reload.apply_settings` (backends added, replaced and drained, new model groups
served). What cannot change live is reported, not applied. A version that fails to validate or
to apply changes nothing: the last good version keeps serving, with a log line and
``gateway_config_apply_failures_total``. A store that cannot be reached is retried with
back-off and never stops the follower: the replica serves what it has meanwhile.

A replica starting while a version is published applies it before it serves; if that version
fails here, it applies the newest kept version that does (what the rest of the fleet kept
serving).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.assembly import CatalogBuilder
from gateway.background import Spawn
from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.config_loader import ConfigError, settings_from_text
from gateway.control.base import ConfigVersion, ControlStore
from gateway.errors import ServiceUnavailableError
from gateway.reload import apply_settings
from gateway.routing.backends import ModelCatalog
from gateway.settings import Settings

log = logging.getLogger("gateway.control.follow")

# Sections a replica takes from its own file only: `models` is what a version changes live,
# `control` says how this replica reaches the store, `source` is bookkeeping.
_LIVE_OR_LOCAL = frozenset({"models", "control", "source"})
_STARTUP_FALLBACKS = 20


@dataclass(frozen=True, slots=True)
class AppliedConfig:
    """The published version a replica serves.

    Attributes:
        version / digest / source: the version's, as published.
        needs_restart: what it changes that was not applied live.
        applied_at: Unix time of the application.
    """

    version: int
    digest: str
    source: str
    needs_restart: list[str] = field(default_factory=list)
    applied_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RejectedConfig:
    """The last version a replica refused, and why (a config error naming the field)."""

    version: int
    error: str


class FollowerMetrics:
    """The follower's series, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.version = Gauge(
            "gateway_config_version",
            "The published config version this replica applied (0: none yet).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.apply_failures = Counter(
            "gateway_config_apply_failures",
            "Published config versions this replica refused (invalid, or failed to apply).",
            registry=registry,
        )
        self.store_failures = Counter(
            "gateway_config_store_failures",
            "Polls of the shared store that failed (the store could not be reached).",
            registry=registry,
        )


def sections_not_applied(running: Settings, published: Settings) -> list[str]:
    """The sections ``published`` changes that a replica does not apply live (it keeps its
    file's until restarted with them in its file)."""
    return [
        f"{name}: differs from this replica's config; only models change live"
        for name in running.__struct_fields__
        if name not in _LIVE_OR_LOCAL and getattr(running, name) != getattr(published, name)
    ]


class ConfigFollower:
    """Applies the config versions published to ``store`` to ``catalog``.

    Args:
        store: the shared store.
        catalog: the live model catalog.
        builder: builds the backends and groups of a new version.
        running: the settings the replica started with (what a version is compared to).
        registry: the app's metrics registry.
        poll_interval_s: the time between two polls.
        max_backoff_s: the longest wait between polls while the store cannot be reached.
        clock: the time source of ``applied_at``.
    """

    def __init__(
        self,
        store: ControlStore,
        catalog: ModelCatalog,
        builder: CatalogBuilder,
        running: Settings,
        registry: CollectorRegistry,
        *,
        poll_interval_s: float,
        max_backoff_s: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.builder = builder
        self.running = running
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max(max_backoff_s, poll_interval_s)
        self.metrics = FollowerMetrics(registry)
        self.clock = clock
        self.applied: AppliedConfig | None = None
        self.rejected: RejectedConfig | None = None
        self._seen = 0  # the last version looked at, applied or not

    async def start(self, spawn: Spawn) -> None:
        """Apply the version published now (when the store answers), then follow the store in
        the background (``spawn``)."""
        try:
            await self._catch_up()
        except ServiceUnavailableError as exc:
            self._store_failed(exc, self.poll_interval_s)
        spawn(self.follow())

    async def follow(self) -> None:
        """Poll the store until cancelled; never raises."""
        delay = self.poll_interval_s
        while True:
            await asyncio.sleep(delay)
            try:
                await self.sync()
            except ServiceUnavailableError as exc:
                delay = min(delay * 2, self.max_backoff_s)
                self._store_failed(exc, delay)
                continue
            if delay != self.poll_interval_s:
                log.info("the control store answers again: following config versions")
                delay = self.poll_interval_s

    async def sync(self) -> bool:
        """Apply the current version if it was not looked at yet; whether one was applied.

        Raises:
            ServiceUnavailableError: the store cannot be reached.
        """
        version = await self.store.current_version()
        if version in (0, self._seen):
            return False
        config = await self.store.config_version(version)
        self._seen = version
        if config is None:  # forgotten between the two reads: a newer one is current
            return False
        error = self._apply(config)
        if error is None:
            return True
        self.rejected = RejectedConfig(version, error)
        self.metrics.apply_failures.inc()
        log.error(
            "config version %d refused, still serving %s: %s",
            version,
            f"version {self.applied.version}" if self.applied else "the config file",
            error,
        )
        return False

    async def _catch_up(self) -> None:
        if await self.sync() or self.rejected is None:
            return
        for config in await self.store.config_versions(limit=_STARTUP_FALLBACKS):
            if config.version < self.rejected.version:
                error = self._apply(config)
                if error is None:
                    return
                log.warning("config version %d refused too: %s", config.version, error)

    def _apply(self, config: ConfigVersion) -> str | None:
        """Validate and apply ``config``: None when applied, else why not (nothing changed)."""
        source = f"config version {config.version} ({config.source})"
        try:
            settings = settings_from_text(config.text, source)
            report = apply_settings(self.catalog, settings, self.builder)
        except ConfigError as exc:
            return str(exc)
        except Exception as exc:  # a plugin's factory failing its own way must not stop us
            log.exception("config version %d failed to apply", config.version)
            return f"{source}: {type(exc).__name__}: {exc}"
        needs_restart = [*report.needs_restart, *sections_not_applied(self.running, settings)]
        self.applied = AppliedConfig(
            config.version, config.digest, config.source, needs_restart, self.clock.time()
        )
        self.metrics.version.set(config.version)
        log.info(
            "applied config version %d from %s: models added %s, backends added %s, "
            "replaced %s, removed %s",
            config.version,
            config.source,
            report.added_models,
            report.added,
            report.replaced,
            report.removed,
        )
        if needs_restart:
            log.warning(
                "config version %d: not applied live: %s", config.version, "; ".join(needs_restart)
            )
        return None

    def _store_failed(self, exc: ServiceUnavailableError, retry_in_s: float) -> None:
        self.metrics.store_failures.inc()
        log.warning("cannot read config versions (retrying in %.1f s): %s", retry_in_s, exc.message)
