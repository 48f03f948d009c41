"""The embedded default configuration, used when no config file is given.

Serves what the environment offers:
- ``GATEWAY_VLLM_URLS``: comma-separated OpenAI-compatible servers; each is asked for its models
  (``GET /v1/models``) and every model becomes a group over the servers that serve it.
- ``GATEWAY_MASTER_KEY``: requires that key on ``/v1`` routes.
When the environment offers no backend, the caller starts two in-process simulator replicas and
serves them as the model group ``sim-chat``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from gateway.config_loader import ConfigError, settings_from_mapping
from gateway.settings import Settings

VLLM_URLS_ENV = "GATEWAY_VLLM_URLS"
SIM_GROUP = "sim-chat"
SIM_MODEL = "sim-model"


def _discover_models(url: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/v1/models", timeout=5) as answer:  # noqa: S310
            data = json.load(answer)
        return [str(card["id"]) for card in data["data"]]
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(VLLM_URLS_ENV, url, f"could not list its models: {exc}") from None


def _auth(env: Mapping[str, str]) -> dict[str, str]:
    key = env.get("GATEWAY_MASTER_KEY")
    return {"master_key": key} if key else {}


def settings_from_environment(env: Mapping[str, str]) -> Settings | None:
    """Settings for the backends named in the environment, or None when it names none.

    Raises:
        ConfigError: a URL in ``GATEWAY_VLLM_URLS`` did not answer ``/v1/models``.
    """
    urls = [u.strip() for u in env.get(VLLM_URLS_ENV, "").split(",") if u.strip()]
    if not urls:
        return None
    groups: dict[str, list[dict[str, object]]] = {}
    for url in urls:
        for model in _discover_models(url):
            groups.setdefault(model, []).append({"provider": "vllm", "url": url})
    models = [{"name": name, "backends": backends} for name, backends in groups.items()]
    data = {"models": models, "auth": _auth(env)}
    return settings_from_mapping(data, f"environment ({VLLM_URLS_ENV})", interpolate=False)


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
