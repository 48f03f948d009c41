"""Serving without a config file: the OpenAI-compatible servers ``GATEWAY_VLLM_URLS`` names."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.defaults import ModelGroupMapping, list_models, split_list

URLS_ENV = "GATEWAY_VLLM_URLS"


class VllmUrlsSource:
    """A ``DefaultSource``: each server in ``GATEWAY_VLLM_URLS`` (comma-separated) is asked for
    its models (``GET /v1/models``), and each model becomes a group over the servers serving it."""

    def discover(self, env: Mapping[str, str]) -> list[ModelGroupMapping]:
        return [
            {"name": model, "backends": [{"provider": "vllm", "url": url}]}
            for url in split_list(env.get(URLS_ENV))
            for model in list_models(url, URLS_ENV)
        ]
