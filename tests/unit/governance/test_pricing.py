"""Prices: config prices exact to the nano-dollar, the cached rate, genai-prices, GPU time, the
price book over a real catalog, and the ``price_table`` policy."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from gateway_cost import register_cost_policies
from gateway_cost.price_table import PriceTablePolicy

from gateway.assembly import CatalogBuilder
from gateway.config_loader import settings_from_mapping
from gateway.cost.base import CostPolicy, UsageRecord
from gateway.governance.pricing import Price, PriceBook, price_from_settings, resolve_price
from gateway.plugins import collect_registries, make_plugin_manager
from gateway.providers.base import ProviderContext
from gateway.routing.backends import ModelCatalog
from gateway.settings import BackendSettings, PriceSettings


def config_price(**fields: Any) -> Price:
    return resolve_price(BackendSettings(price=PriceSettings(**fields)), "vllm", "anything")


def test_config_prices_are_exact_to_the_nano_dollar() -> None:
    price = config_price(input_per_mtok=0.15, output_per_mtok=0.60)
    assert price.source == "config"
    assert price.input_per_mtok == Decimal("0.15")  # the decimal written, not the float's
    # 1,234 x $0.15/M + 567 x $0.60/M = $0.0001851 + $0.0003402 = $0.0005253
    assert price.cost_nanos(1234, 0, 567) == 525_300
    assert price.cost_nanos(0, 0, 0) == 0


def test_cached_prompt_tokens_are_part_of_the_prompt_and_priced_at_the_cached_rate() -> None:
    price = config_price(input_per_mtok=0.15, cached_input_per_mtok=0.075, output_per_mtok=0.6)
    # 234 fresh x 150 + 1000 cached x 75 + 567 x 600 nano-dollars
    assert price.cost_nanos(1234, 1000, 567) == 35_100 + 75_000 + 340_200
    # Without a cached rate, cached tokens cost the input rate.
    plain = config_price(input_per_mtok=0.15, output_per_mtok=0.6)
    assert plain.cost_nanos(1234, 1000, 567) == plain.cost_nanos(1234, 0, 567)
    # More cached tokens than prompt tokens cannot make anything cheaper than all cached.
    assert price.cost_nanos(10, 50, 0) == price.cost_nanos(10, 10, 0)


def test_costs_round_half_even_to_a_nano_dollar() -> None:
    price = config_price(input_per_mtok=0.0015)  # 1.5 nano-dollars a token
    assert price.cost_nanos(1, 0, 0) == 2  # 1.5 -> 2
    assert price.cost_nanos(3, 0, 0) == 4  # 4.5 -> 4
    assert price.cost_nanos(5, 0, 0) == 8  # 7.5 -> 8


def test_large_usage_is_still_exact() -> None:
    price = config_price(input_per_mtok=3.0, output_per_mtok=15.0)
    assert price.cost_nanos(10**9, 0, 10**8) == 3 * 10**12 + 15 * 10**11


def test_worst_case_has_no_cache_discount_and_rounds_up() -> None:
    price = config_price(input_per_mtok=0.15, cached_input_per_mtok=0.0, output_per_mtok=0.6)
    assert price.worst_case_nanos(1234, 567) == 525_300
    assert config_price(input_per_mtok=0.0015).worst_case_nanos(3, 0) == 5  # 4.5 -> 5


def test_gpu_time_pricing_charges_busy_time_and_reserves_by_output_rate() -> None:
    price = config_price(
        input_per_mtok=1.0, output_per_mtok=1.0, gpu_hour_usd=3.6, gpu_tokens_per_s=20
    )
    assert price.gpu_hour_usd == Decimal("3.6")
    # $3.60 an hour is $0.001 a second; tokens do not count.
    assert price.cost_nanos(1000, 0, 1000, busy_s=2.5) == 2_500_000
    assert price.cost_nanos(1000, 0, 1000) == 0  # no busy time measured
    # 100 tokens at 20 tokens/s is 5 s at $0.001/s.
    assert price.worst_case_nanos(10_000, 100) == 5_000_000
    inp, out = price.per_mtok()
    assert inp == 0.0
    assert out == pytest.approx(50.0)  # $0.001/s / 20 tokens/s * 1e6


def test_genai_prices_for_an_openai_model() -> None:
    price = resolve_price(BackendSettings(provider="openai"), "openai", "gpt-4o-mini")
    assert price.source == "genai-prices"
    assert price.input_per_mtok > 0
    assert price.output_per_mtok > price.input_per_mtok
    assert 0 < price.cached_input_per_mtok < price.input_per_mtok
    expected = (1234 * price.input_per_mtok + 567 * price.output_per_mtok) * 1000  # nano-dollars
    assert price.cost_nanos(1234, 0, 567) == int(expected.to_integral_value())


def test_genai_prices_for_an_anthropic_model() -> None:
    price = resolve_price(
        BackendSettings(provider="anthropic"), "anthropic", "claude-3-5-haiku-latest"
    )
    assert price.source == "genai-prices"
    assert price.input_per_mtok > 0
    assert price.output_per_mtok > 0
    assert price.cost_nanos(1000, 0, 1000) > 0


def test_an_unknown_model_costs_nothing() -> None:
    price = resolve_price(BackendSettings(), "vllm", "my-own-finetune-7b")
    assert price.source == "none"
    assert price.free
    assert price.cost_nanos(1000, 0, 1000) == 0


def test_a_config_price_wins_over_the_table() -> None:
    settings = BackendSettings(provider="openai", price=PriceSettings(input_per_mtok=1.0))
    assert resolve_price(settings, "openai", "gpt-4o-mini") == price_from_settings(
        PriceSettings(input_per_mtok=1.0)
    )


def catalog(models: list[dict[str, Any]]) -> ModelCatalog:
    settings = settings_from_mapping({"models": models}, "test")
    registries = collect_registries(make_plugin_manager([]))
    return CatalogBuilder(registries, ProviderContext()).catalog(settings)


MODELS: list[dict[str, Any]] = [
    {
        "name": "chat",
        "capabilities": ["tools"],
        "backends": [
            {
                "name": "cheap",
                "url": "http://127.0.0.1:9",
                "model": "m",
                "context_window": 8192,
                "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.2},
            },
            {
                "name": "dear",
                "url": "http://127.0.0.1:9",
                "model": "m",
                "context_window": 4096,
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            },
            {"url": "http://127.0.0.1:9", "model": "m"},  # chat-2, context unknown
        ],
    },
    {
        "name": "llama",
        "backends": [{"name": "x", "url": "http://127.0.0.1:9", "model": "my-own-finetune"}],
    },
    {
        "name": "mini",
        "backends": [
            {
                "provider": "openai",
                "url": "http://127.0.0.1:9",
                "model": "gpt-4o-mini",
                "api_key": "sk-test",
            }
        ],
    },
]


def test_the_price_book_over_a_catalog() -> None:
    book = PriceBook(catalog(MODELS))
    assert book.for_backend("cheap").input_per_mtok == Decimal("0.1")
    assert book.for_backend("dear").output_per_mtok == Decimal("2.0")
    assert book.for_backend("mini-0").source == "genai-prices"
    assert book.for_backend("x").source == "none"
    assert book.get("nobody") is None
    assert book.for_backend("nobody").source == "none"

    facts = book.group_facts("chat")
    assert facts.context_window == 4096  # the smallest known
    assert facts.capabilities == frozenset({"tools"})
    assert (facts.input_per_mtok, facts.output_per_mtok) == (1.0, 2.0)  # the dearest backend
    assert book.group_facts("llama").capabilities is None
    assert book.facts["chat"] == facts

    # The dearest backend decides what is reserved: 1000 x 1000 + 500 x 2000 nano-dollars.
    assert book.worst_case_nanos("chat", 1000, 500) == 2_000_000
    assert book.worst_case_nanos("unknown", 1000, 500) == 0

    warnings = book.warnings()
    assert any("`chat-2` of `chat`" in w for w in warnings)
    assert any("`x` of `llama`" in w and "set `price:`" in w for w in warnings)
    assert not any("mini" in w for w in warnings)


def test_the_book_from_settings_alone_agrees_with_the_catalogs() -> None:
    settings = settings_from_mapping({"models": MODELS}, "test")
    from_settings = PriceBook.from_settings(settings.models)
    from_catalog = PriceBook(catalog(MODELS))
    for name in ("cheap", "dear", "chat-2", "x", "mini-0"):
        assert from_settings.for_backend(name) == from_catalog.for_backend(name)
    assert from_settings.warnings() == from_catalog.warnings()


def test_the_price_table_policy_prices_from_its_bound_book() -> None:
    registered: dict[str, Any] = {}
    register_cost_policies(lambda name, factory: registered.__setitem__(name, factory))
    assert registered["price_table"] is PriceTablePolicy

    policy = registered["price_table"]()
    assert isinstance(policy, PriceTablePolicy)
    assert isinstance(policy, CostPolicy)
    usage = UsageRecord("chat", "cheap", prompt_tokens=1000, completion_tokens=500)
    assert policy.cost(usage) is None  # not bound yet
    policy.bind(PriceBook(catalog(MODELS)))
    assert policy.cost(usage) == 1000 * 100 + 500 * 200
    assert policy.cost(UsageRecord("chat", "gone", 1, 1)) is None
    assert policy.decide(None) is None  # type: ignore[arg-type]  # no opinion on routing

    factory: Any = registered["price_table"]
    with pytest.raises(TypeError):
        factory(surprise=1)


def test_the_price_table_policy_prices_gpu_time_from_the_records_busy_time() -> None:
    models = [
        {
            "name": "own",
            "backends": [
                {"name": "gpu", "url": "http://127.0.0.1:9", "price": {"gpu_hour_usd": 3.6}}
            ],
        }
    ]
    policy = PriceTablePolicy(book=PriceBook(catalog(models)))
    usage = UsageRecord("own", "gpu", 100, 100, busy_s=0.5)
    assert policy.cost(usage) == 500_000


def test_a_backend_added_at_runtime_is_priced_from_its_spec() -> None:
    live = catalog(MODELS)
    group = live.resolve("chat")
    registries = collect_registries(make_plugin_manager([]))
    added = CatalogBuilder(registries, ProviderContext()).backend(
        BackendSettings(
            name="late", url="http://127.0.0.1:9", price=PriceSettings(input_per_mtok=0.5)
        ),
        group.settings,
        len(group.backends),
        "admin API",
    )
    group.backends = [*group.backends, added]
    book = PriceBook(live)
    assert book.for_backend("late").input_per_mtok == Decimal("0.5")
    assert book.for_backend("late").source == "config"
