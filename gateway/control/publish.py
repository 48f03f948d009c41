"""publish-config: validate a config's YAML as the gateway would load it, and publish it to
the shared store as the next version, which every replica following the store applies live.

Validation is ``gateway check``'s: the loader (every field, naming the file and the field) and
then building the app's objects without starting anything, so an unknown provider, tool or
routing strategy is refused here rather than by each replica. An invalid config publishes
nothing: the current version keeps serving. Rolling back is publishing an older version's text
again, as a new version, so replicas only ever move forward.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pluggy

from gateway.assembly import build_state
from gateway.config_loader import ConfigError, settings_from_text
from gateway.control.base import ConfigVersion, ControlStore
from gateway.plugins import PluginError

log = logging.getLogger("gateway.control.publish")


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What a publication did.

    Attributes:
        version: the version published (None when refused).
        errors: why it was refused: config errors naming the source and the field.
    """

    version: ConfigVersion | None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """A version was published."""
        return self.version is not None


async def config_errors(
    text: str, source: str, plugin_manager: pluggy.PluginManager | None = None
) -> list[str]:
    """Why ``text`` cannot be served (empty when it can), ``source`` named in each message.

    Args:
        plugin_manager: the plugins to build with (default: the installed ones).
    """
    try:
        settings = settings_from_text(text, source)
        state = build_state(settings, plugin_manager)
    except (ConfigError, PluginError) as exc:
        return [str(exc)]
    # Built to be checked, never started: only what holds a client needs closing.
    if state.control_store is not None:
        await state.control_store.aclose()
    return []


async def publish_config(
    text: str,
    source: str,
    store: ControlStore,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
) -> PublishOutcome:
    """Validate ``text`` and, if valid, publish it as the next version of ``store``.

    Args:
        text: the config's YAML, as uploaded (``${VAR}`` is interpolated to validate it, and
            kept as written for each replica to interpolate with its own environment).
        source: where it came from (``s3://bucket/key``, a path): errors name it.
        plugin_manager: the plugins to validate with (default: the installed ones).

    Raises:
        ServiceUnavailableError: the store cannot be reached (nothing was published).
    """
    errors = await config_errors(text, source, plugin_manager)
    if errors:
        for error in errors:
            log.warning("config from %s refused: %s", source, error)
        return PublishOutcome(None, errors)
    version = await store.publish_config(text, source)
    log.info("published config version %d from %s (%s)", version.version, source, version.digest)
    return PublishOutcome(version)


async def rollback(
    store: ControlStore,
    version: int,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
) -> PublishOutcome:
    """Publish version ``version``'s text again, as a new version (validated again: the
    plugins installed may have changed since).

    Raises:
        ServiceUnavailableError: the store cannot be reached.
    """
    old = await store.config_version(version)
    if old is None:
        return PublishOutcome(None, [f"version {version} is not kept by the store"])
    source = f"rollback to version {version} of {old.source}"
    return await publish_config(old.text, source, store, plugin_manager=plugin_manager)
