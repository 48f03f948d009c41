"""Plugin loading: attribution of registrations, and errors that name the guilty plugin."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import post

from gateway import hookimpl
from gateway.app import create_app
from gateway.config_loader import settings_from_mapping
from gateway.plugins import PluginError, collect_registries, make_plugin_manager


class _Strategy:
    def choose(self, request: Any, backends: Any) -> int:
        return 0


class Good:
    @hookimpl
    def register_routing_strategies(self, register: Any) -> None:
        register("mine", _Strategy)


class Duplicate:
    @hookimpl
    def register_routing_strategies(self, register: Any) -> None:
        register("round_robin", _Strategy)


class WrongKind:
    @hookimpl
    def register_commands(self, register: Any) -> None:
        register("oops", "not a command")


class Misspelt:
    @hookimpl
    def register_provider(self, register: Any) -> None:  # the real hook is register_providers
        pass


def test_builtins_load_through_entry_points() -> None:
    registries = collect_registries(make_plugin_manager())
    assert "vllm" in registries.providers
    assert registries.routing_strategies.owner("round_robin") == "round_robin"
    assert registries.commands.owner("sim") == "sim"


def test_registrations_are_attributed_to_their_plugin() -> None:
    registries = collect_registries(make_plugin_manager(extra=[("good", Good())]))
    assert registries.routing_strategies.owner("mine") == "good"


def test_duplicate_names_name_both_plugins() -> None:
    pm = make_plugin_manager(extra=[("dup", Duplicate())])
    with pytest.raises(
        PluginError,
        match="plugin `dup` registered routing strategy `round_robin`, which plugin `round_robin`",
    ):
        collect_registries(pm)


def test_wrong_kind_is_rejected() -> None:
    with pytest.raises(PluginError, match="plugin `bad` registered command `oops` as str"):
        collect_registries(make_plugin_manager(extra=[("bad", WrongKind())]))


def test_misspelt_hook_fails_at_load() -> None:
    with pytest.raises(PluginError, match="plugin `typo` implements an unknown hook"):
        make_plugin_manager(extra=[("typo", Misspelt())])


def test_disabled_plugins_do_not_load() -> None:
    registries = collect_registries(make_plugin_manager(["round_robin"]))
    assert "round_robin" not in registries.routing_strategies
    assert "vllm" in registries.providers


class Shadowing:
    @hookimpl
    def register_routes(self, register: Any) -> None:
        @post("/v1/chat/completions")
        async def mine() -> None:
            return None

        register("my-chat", mine)


def test_a_plugin_route_may_not_take_an_inference_route() -> None:
    settings = settings_from_mapping(
        {"models": [{"name": "m", "backends": [{"url": "http://127.0.0.1:9"}]}]}, "test"
    )
    pm = make_plugin_manager(extra=[("shadow", Shadowing())])
    with pytest.raises(PluginError, match="plugin `shadow` registered route `my-chat` on /v1/chat"):
        create_app(settings, plugin_manager=pm)


class NotAGuardrailFactory:
    @hookimpl
    def register_guardrails(self, register: Any) -> None:
        register("strict", "not callable")


class TwoSources:
    class Source:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def discover(self, env: Any) -> list[Any]:
            return []

    @hookimpl
    def register_default_sources(self, register: Any) -> None:
        register("zz-first", self.Source("first"))
        register("aa-second", self.Source("second"))


def test_new_kinds_check_what_they_get() -> None:
    with pytest.raises(PluginError, match="plugin `bad` registered guardrail `strict` as str"):
        collect_registries(make_plugin_manager(extra=[("bad", NotAGuardrailFactory())]))


def test_items_are_sorted_by_name() -> None:
    pm = make_plugin_manager(entry_points=False, extra=[("two", TwoSources())])
    sources = collect_registries(pm).default_sources
    tags = []
    for name, source in sources.items():
        assert isinstance(source, TwoSources.Source)
        tags.append((name, source.tag))
    assert tags == [
        ("aa-second", "second"),
        ("zz-first", "first"),
    ]
    assert sources.owner("zz-first") == "two"


def test_builtins_offer_the_defaults() -> None:
    registries = collect_registries(make_plugin_manager())
    assert registries.default_sources.names() == ["anthropic_key", "openai_key", "vllm_urls"]
    assert registries.embedded_defaults.owner("simulator") == "sim"
