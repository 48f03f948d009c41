"""The embedded default configuration, used when no config file is given.

Serves what the environment offers:
- ``GATEWAY_VLLM_URLS``: comma-separated OpenAI-compatible servers; each is asked for its models
  (``GET /v1/models``) and every model becomes a group over the servers that serve it.
- ``OPENAI_API_KEY`` (with ``OPENAI_BASE_URL``) and ``ANTHROPIC_API_KEY`` (with
  ``ANTHROPIC_BASE_URL``): that provider's models, from ``GATEWAY_OPENAI_MODELS`` /
  ``GATEWAY_ANTHROPIC_MODELS`` (comma-separated) or else from its ``/v1/models``.
- ``GATEWAY_MASTER_KEY``: requires that key on ``/v1`` routes.
When the environment offers no backend, the caller starts two in-process simulator replicas and
serves them as the model group ``sim-chat``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config_loader import ConfigError, settings_from_mapping
from gateway.settings import Settings

VLLM_URLS_ENV = "GATEWAY_VLLM_URLS"
SIM_GROUP = "sim-chat"
SIM_MODEL = "sim-model"


@dataclass(frozen=True)
class CloudSource:
    """How the environment names one cloud provider."""

    provider: str
    key_env: str
    url_env: str
    models_env: str
    default_url: str
    key_header: str


CLOUDS = (
    CloudSource(
        "openai",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "GATEWAY_OPENAI_MODELS",
        "https://api.openai.com",
        "authorization",
    ),
    CloudSource(
        "anthropic",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "GATEWAY_ANTHROPIC_MODELS",
        "https://api.anthropic.com",
        "x-api-key",
    ),
)


def _discover_models(url: str, source: str, headers: Mapping[str, str] | None = None) -> list[str]:
    listing = f"{url.rstrip('/')}/v1/models"
    request = urllib.request.Request(listing, headers=dict(headers or {}))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            data = json.load(answer)
        return [str(card["id"]) for card in data["data"]]
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(source, url, f"could not list its models: {exc}") from None


def _auth(env: Mapping[str, str]) -> dict[str, str]:
    key = env.get("GATEWAY_MASTER_KEY")
    return {"master_key": key} if key else {}


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _cloud_backends(env: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for cloud in CLOUDS:
        key = env.get(cloud.key_env)
        if not key:
            continue
        url = (env.get(cloud.url_env) or "").rstrip("/").removesuffix("/v1")
        models = _split(env.get(cloud.models_env))
        if not models:
            token = f"Bearer {key}" if cloud.key_header == "authorization" else key
            headers = {cloud.key_header: token, "anthropic-version": "2023-06-01"}
            models = _discover_models(url or cloud.default_url, cloud.key_env, headers)
        for model in models:
            out.append(
                (model, {"provider": cloud.provider, "url": url, "model": model, "api_key": key})
            )
    return out


def settings_from_environment(env: Mapping[str, str]) -> Settings | None:
    """Settings for the backends named in the environment, or None when it names none.

    Raises:
        ConfigError: a server or provider in the environment did not list its models.
    """
    backends: list[tuple[str, dict[str, Any]]] = []
    for url in _split(env.get(VLLM_URLS_ENV)):
        backends += [
            (model, {"provider": "vllm", "url": url})
            for model in _discover_models(url, VLLM_URLS_ENV)
        ]
    backends += _cloud_backends(env)
    if not backends:
        return None
    groups: dict[str, list[dict[str, Any]]] = {}
    for model, backend in backends:
        groups.setdefault(model, []).append(backend)
    models = [{"name": name, "backends": members} for name, members in groups.items()]
    data = {"models": models, "auth": _auth(env)}
    return settings_from_mapping(data, "environment", interpolate=False)


def simulator_settings(urls: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Settings serving the in-process simulator replicas at ``urls`` as ``sim-chat``."""
    backends = [
        {"provider": "vllm", "url": url, "model": SIM_MODEL, "name": f"sim-{i}"}
        for i, url in enumerate(urls)
    ]
    data = {
        "models": [{"name": SIM_GROUP, "backends": backends, "owned_by": "simulator"}],
        "auth": _auth(env),
    }
    return settings_from_mapping(data, "embedded default (in-process simulator)", interpolate=False)
