"""The embedded default configuration, used when no config file is given.

Plugins offer it, so the core names no vendor:
- each :class:`DefaultSource` (``register_default_sources``) reads the environment for backends
  it knows how to reach (a provider plugin reads its own API key, a URL list...); model groups
  of the same name from several sources are merged, sources taken in the order of their names;
- ``GATEWAY_MASTER_KEY`` (here) requires that key on ``/v1`` routes;
- when the environment names no backend, each :class:`EmbeddedDefault`
  (``register_embedded_defaults``; the simulator plugin offers one) starts its backends in this
  process and they are served instead.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

from gateway.config_loader import ConfigError, settings_from_mapping
from gateway.settings import Settings

MASTER_KEY_ENV = "GATEWAY_MASTER_KEY"
ModelGroupMapping: TypeAlias = Mapping[str, Any]
"""One entry of the config's ``models:`` list, as a mapping (``name``, ``backends``...)."""


@runtime_checkable
class DefaultSource(Protocol):
    """Backends the environment names, served when there is no config file."""

    def discover(self, env: Mapping[str, str]) -> Sequence[ModelGroupMapping]:
        """Model groups for what ``env`` names; empty when it names nothing of this source's.

        Runs once, before the gateway serves; it may block (list an upstream's models).

        Raises:
            ConfigError: the environment names a backend that cannot be used; the message
                names the variable.
        """
        ...


@dataclass(frozen=True, slots=True)
class EmbeddedBackends:
    """Backends an :class:`EmbeddedDefault` started, and how to tell the operator.

    Attributes:
        models: the model groups serving them.
        description: what they are, for the settings' source (``in-process simulator``).
        note: the start-up banner's note (``started 2 simulator replicas (...) as model ...``).
    """

    models: Sequence[ModelGroupMapping]
    description: str
    note: str


@runtime_checkable
class EmbeddedDefault(Protocol):
    """Backends started inside the gateway's process when nothing else is configured."""

    def start(self) -> EmbeddedBackends:
        """Start the backends (they live as long as the process) and describe them.

        Raises:
            RuntimeError: they could not be started.
        """
        ...


def list_models(url: str, variable: str, headers: Mapping[str, str] | None = None) -> list[str]:
    """The model ids an OpenAI-style ``GET {url}/v1/models`` lists.

    Raises:
        ConfigError: naming ``variable`` (the environment variable that named ``url``).
    """
    listing = f"{url.rstrip('/')}/v1/models"
    request = urllib.request.Request(listing, headers=dict(headers or {}))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            data = json.load(answer)
        return [str(card["id"]) for card in data["data"]]
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(variable, url, f"could not list its models: {exc}") from None


def split_list(value: str | None) -> list[str]:
    """The items of a comma-separated environment value, stripped, empty ones dropped."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeySource:
    """A :class:`DefaultSource` for a hosted API the environment names by its API key.

    With ``key_env`` set, every model in ``models_env`` (comma-separated), else every model the
    API lists, becomes a group of one backend of ``provider``.

    Attributes:
        provider: the registered provider type.
        key_env: the variable holding the API key.
        url_env: the variable that may override the base URL (a trailing ``/v1`` is dropped).
        models_env: the variable that may list the models instead of asking the API.
        default_url: the API's base URL, for listing models.
        listing_headers: the headers that authenticate a model listing, given the key.
    """

    provider: str
    key_env: str
    url_env: str
    models_env: str
    default_url: str
    listing_headers: Callable[[str], Mapping[str, str]] = field(
        default=lambda key: {"authorization": f"Bearer {key}"}
    )

    def discover(self, env: Mapping[str, str]) -> list[ModelGroupMapping]:
        key = env.get(self.key_env)
        if not key:
            return []
        url = (env.get(self.url_env) or "").rstrip("/").removesuffix("/v1")
        models = split_list(env.get(self.models_env)) or list_models(
            url or self.default_url, self.key_env, self.listing_headers(key)
        )
        backend = {"provider": self.provider, "url": url, "api_key": key}
        return [{"name": m, "backends": [{**backend, "model": m}]} for m in models]


def merge_groups(groups: Iterable[ModelGroupMapping]) -> list[dict[str, Any]]:
    """Groups of the same name as one, their backends in order; first appearance sets the order."""
    merged: dict[str, dict[str, Any]] = {}
    for group in groups:
        name = str(group["name"])
        if name in merged:
            merged[name]["backends"] = [*merged[name]["backends"], *group["backends"]]
        else:
            merged[name] = dict(group)
    return list(merged.values())


def _auth(env: Mapping[str, str]) -> dict[str, str]:
    key = env.get(MASTER_KEY_ENV)
    return {"master_key": key} if key else {}


def settings_from_environment(
    env: Mapping[str, str], sources: Iterable[DefaultSource]
) -> Settings | None:
    """Settings for the backends ``sources`` find in the environment, or None when none does.

    Raises:
        ConfigError: a source could not use what the environment names.
    """
    models = merge_groups(group for source in sources for group in source.discover(env))
    if not models:
        return None
    data = {"models": models, "auth": _auth(env)}
    return settings_from_mapping(data, "environment", interpolate=False)


def embedded_settings(started: Sequence[EmbeddedBackends], env: Mapping[str, str]) -> Settings:
    """Settings serving the backends that embedded defaults started.

    Raises:
        ConfigError: nothing was started (no plugin offers an embedded default).
    """
    if not started:
        raise ConfigError(
            "embedded default",
            None,
            "no config file, no backends in the environment, and no plugin offers embedded "
            "backends: see docs/configuration.md",
        )
    models = merge_groups(group for s in started for group in s.models)
    data = {"models": models, "auth": _auth(env)}
    described = ", ".join(s.description for s in started)
    return settings_from_mapping(data, f"embedded default ({described})", interpolate=False)
