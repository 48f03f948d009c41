"""GPU-hour pricing of a node, its engines and the backends it registers, in exact figures."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from gateway.governance.pricing import price_from_settings
from gateway.node.base import GpuReading
from gateway.node.cost import (
    backend_price,
    engine_usd_per_hour,
    fleet_usd_per_hour,
    gpu_hour_price,
    usd_per_million_tokens,
)
from gateway.settings import PriceSettings

PRICES = {"NVIDIA H200": 3.1, "nvidia l4": 0.7, "NVIDIA A100": 0.0}


def gpu(index: int, name: str) -> GpuReading:
    return GpuReading(
        index=index,
        uuid=f"GPU-{index}",
        name=name,
        memory_total_mib=1,
        memory_used_mib=0,
        memory_free_mib=1,
    )


def test_a_gpu_is_priced_by_its_exact_name_then_case_insensitively() -> None:
    prices = {"NVIDIA H200": 3.5, "nvidia h200": 9.0, "nvidia l4": 0.7}
    assert gpu_hour_price(prices, "NVIDIA H200") == 3.5
    assert gpu_hour_price(prices, "NVIDIA L4") == 0.7
    assert gpu_hour_price(prices, "Nvidia H200") == 3.5  # the first case-insensitive match
    assert gpu_hour_price(prices, "NVIDIA H100") is None
    assert gpu_hour_price({"NVIDIA A100": 0.0}, "NVIDIA A100") == 0.0  # free is a price


def test_the_fleet_costs_its_priced_gpus_and_names_the_unpriced_ones_once() -> None:
    readings = [gpu(i, "NVIDIA H200") for i in range(8)]
    assert fleet_usd_per_hour(readings, PRICES) == (24.8, [])  # not 24.800000000000004
    mixed = [gpu(0, "NVIDIA H200"), gpu(1, "NVIDIA H100"), gpu(2, "NVIDIA L4")]
    mixed.append(gpu(3, "NVIDIA H100"))
    assert fleet_usd_per_hour(mixed, PRICES) == (3.8, ["NVIDIA H100"])
    assert fleet_usd_per_hour([], PRICES) == (0.0, [])


def test_an_engine_is_priced_only_when_all_its_gpus_are() -> None:
    assert engine_usd_per_hour(["NVIDIA H200", "NVIDIA H200", "NVIDIA L4"], PRICES) == 6.9
    assert engine_usd_per_hour(["NVIDIA H200", "NVIDIA H100"], PRICES) is None
    assert engine_usd_per_hour([], PRICES) is None
    assert engine_usd_per_hour(["NVIDIA A100"], PRICES) == 0.0


def test_cost_per_million_tokens() -> None:
    # $3.6 an hour for 10 minutes is $0.6; over 200,000 tokens that is $3 per million.
    assert usd_per_million_tokens(3.6, 600.0, 200_000) == 3.0
    # An hour at $3.1 over 3 tokens: $1,033,333.33... per million, the nearest float to it.
    assert usd_per_million_tokens(3.1, 3600.0, 3) == float(Decimal("3.1") * 1_000_000 / 3)
    assert usd_per_million_tokens(3.1, 60.0, 0) is None


def test_the_backend_price_reads_back_in_the_gateway_as_the_same_decimal() -> None:
    engine = engine_usd_per_hour(["NVIDIA H200"] * 8, PRICES)
    assert engine is not None
    price = backend_price(engine)
    assert price == {"gpu_hour_usd": 24.8}
    settings = msgspec.convert(price, PriceSettings)  # how the admin API decodes it
    assert price_from_settings(settings).gpu_hour_usd == Decimal("24.8")
