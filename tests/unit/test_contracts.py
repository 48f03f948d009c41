"""The plugin-facing contracts: capabilities, the generic engine-metrics loop, default sources
and the package face."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from gateway_vllm import parse_engine_metrics

import gateway
from gateway.app import build_state
from gateway.config_loader import ConfigError, settings_from_mapping
from gateway.defaults import (
    ApiKeySource,
    embedded_settings,
    merge_groups,
    settings_from_environment,
)
from gateway.hookspecs import RegisterProvider
from gateway.providers.base import (
    OPENAI_ENDPOINTS,
    BackendSpec,
    Endpoint,
    ProviderContext,
    endpoints_of,
    token_counter_of,
)
from gateway.routing.base import EngineMetrics
from gateway.routing.scraper import engine_targets, scrape_once
from gateway.settings import TimeoutSettings
from gateway.testing import FakeProvider, plugin_manager

VLLM_METRICS = """# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0"} 3.0
vllm:num_requests_waiting{engine="1"} 1.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0"} 5.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0"} 0.25
vllm:gpu_cache_usage_perc{engine="1"} 0.5
"""


def test_vllm_metrics_are_parsed_by_the_vllm_plugin() -> None:
    assert parse_engine_metrics(VLLM_METRICS, 7.0) == EngineMetrics(4.0, 5.0, 0.5, 7.0)
    assert parse_engine_metrics("# nothing\n", 7.0) is None


class Metered(FakeProvider):
    """A fake whose engine reports a load, or fails."""

    reading: EngineMetrics | None = EngineMetrics(1.0, 2.0, 0.1, 0.0)

    async def engine_metrics(self) -> EngineMetrics | None:
        if self.reading is None:
            raise RuntimeError("engine unreachable")
        return self.reading


class MeteredPlugin:
    @gateway.hookimpl
    def register_providers(self, register: RegisterProvider) -> None:
        register("metered", Metered)


def catalog_for(strategy: str) -> Any:
    backends = [{"provider": "metered", "name": "m"}, {"provider": "fake", "name": "f"}]
    config = {"models": [{"name": "g", "routing": {"strategy": strategy}, "backends": backends}]}
    settings = settings_from_mapping(config, "test")
    return build_state(settings, plugin_manager(MeteredPlugin())).catalog


def test_only_engine_metric_sources_of_strategies_that_use_them_are_read() -> None:
    assert engine_targets(catalog_for("round_robin")) == []
    targets = engine_targets(catalog_for("vllm_load"))
    assert [backend.name for backend, _ in targets] == ["m"]


def test_a_failed_reading_keeps_the_old_one() -> None:
    backend, source = engine_targets(catalog_for("vllm_load"))[0]
    asyncio.run(scrape_once(backend, source, 1.0))
    assert backend.engine == Metered.reading
    assert isinstance(source, Metered)
    source.reading = None
    asyncio.run(scrape_once(backend, source, 1.0))
    assert backend.engine == Metered.reading


def test_capability_helpers() -> None:
    spec = BackendSpec("b", "g", "", "m", None, 1.0, TimeoutSettings())
    assert endpoints_of(object()) == OPENAI_ENDPOINTS
    fake = FakeProvider(spec, ProviderContext())
    assert token_counter_of(fake) is None
    assert Endpoint.CHAT in endpoints_of(fake)


class Listed:
    def __init__(self, *groups: Mapping[str, Any]) -> None:
        self.groups = list(groups)

    def discover(self, env: Mapping[str, str]) -> list[Mapping[str, Any]]:
        return self.groups


def test_groups_of_one_name_from_several_sources_merge() -> None:
    a = {"name": "m", "backends": [{"url": "http://a"}]}
    b = {"name": "m", "backends": [{"url": "http://b"}]}
    c = {"name": "n", "backends": [{"url": "http://c"}]}
    assert merge_groups([a, c, b]) == [
        {"name": "m", "backends": [{"url": "http://a"}, {"url": "http://b"}]},
        c,
    ]
    settings = settings_from_environment({"GATEWAY_MASTER_KEY": "k"}, [Listed(a, c), Listed(b)])
    assert settings is not None
    assert [g.name for g in settings.models] == ["m", "n"]
    assert settings.auth.master_key == "k"
    assert settings_from_environment({}, [Listed()]) is None


def test_an_api_key_source_serves_the_listed_models_without_asking() -> None:
    source = ApiKeySource(
        provider="p", key_env="P_KEY", url_env="P_URL", models_env="P_MODELS", default_url="x"
    )
    assert source.discover({}) == []
    found = source.discover({"P_KEY": "k", "P_URL": "http://h/v1/", "P_MODELS": "a, b"})
    assert found[1] == {
        "name": "b",
        "backends": [{"provider": "p", "url": "http://h", "api_key": "k", "model": "b"}],
    }


def test_no_embedded_default_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no plugin offers embedded backends"):
        embedded_settings([], {})


def test_the_package_face() -> None:
    for name in gateway.__all__:
        assert getattr(gateway, name) is not None, name
    assert gateway.Provider is gateway.providers.base.Provider
    assert (Path(gateway.__file__).parent / "py.typed").exists()
    with pytest.raises(AttributeError):
        _ = gateway.NoSuchThing
