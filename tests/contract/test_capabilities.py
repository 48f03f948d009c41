"""Every built-in provider and strategy that offers a capability offers all of it, with the
documented signature (``isinstance`` on a runtime-checkable Protocol only sees names)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from typing_extensions import get_protocol_members

from gateway.plugins import collect_registries, make_plugin_manager
from gateway.providers.base import CAPABILITIES, BackendSpec, ProviderContext
from gateway.routing.base import UsesEngineMetrics
from gateway.settings import TimeoutSettings

REGISTRIES = collect_registries(make_plugin_manager())


def built_in_providers() -> list[tuple[str, Any]]:
    spec = BackendSpec(
        name="b",
        group="g",
        url="http://127.0.0.1:9",
        model="m",
        api_key="sk-test",
        weight=1.0,
        timeouts=TimeoutSettings(),
    )
    return [
        (name, factory(spec, ProviderContext())) for name, factory in REGISTRIES.providers.items()
    ]


PROVIDERS = built_in_providers()


@pytest.mark.parametrize("capability", CAPABILITIES, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("name", "provider"), PROVIDERS, ids=[n for n, _ in PROVIDERS])
def test_a_provider_offering_a_capability_satisfies_it(
    name: str, provider: Any, capability: type
) -> None:
    members = get_protocol_members(capability)
    if not any(hasattr(provider, m) for m in members):
        return  # not offered
    assert isinstance(provider, capability), f"{name} offers part of {capability.__name__}"
    for member in members:
        declared = getattr(capability, member, None)
        if inspect.isfunction(declared):
            offered = getattr(provider, member)
            assert inspect.iscoroutinefunction(offered) == inspect.iscoroutinefunction(declared)
            want = list(inspect.signature(declared).parameters)[1:]
            assert list(inspect.signature(offered).parameters) == want, f"{name}.{member}"


def test_served_endpoints_are_endpoints() -> None:
    from gateway.providers.base import Endpoint, ServesEndpoints

    for _, provider in PROVIDERS:
        if isinstance(provider, ServesEndpoints):
            assert isinstance(provider.endpoints, frozenset)
            assert all(isinstance(e, Endpoint) for e in provider.endpoints)


def test_strategies_asking_for_engine_metrics_say_so_with_a_bool() -> None:
    asking = []
    for name, factory in REGISTRIES.routing_strategies.items():
        if hasattr(factory, "needs_engine_metrics"):
            assert isinstance(factory(), UsesEngineMetrics), name
            assert isinstance(factory.needs_engine_metrics, bool), name
            asking.append(name)
    assert "vllm_load" in asking


def test_the_vllm_provider_offers_every_capability_but_token_counts() -> None:
    offered = {
        c.__name__ for c in CAPABILITIES for n, p in PROVIDERS if n == "vllm" and isinstance(p, c)
    }
    assert offered == {"ServesEndpoints", "HealthChecked", "EngineMetricsSource"}
