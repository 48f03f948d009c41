"""What a node's GPUs cost: ``node.gpu_hour_usd`` (US dollars per GPU hour, by GPU model name)
applied to the node, to each engine, and to the price of the backends it registers.

Sums are taken in decimals of the prices as written (``Decimal(repr(price))``, as
:mod:`gateway.governance.pricing` reads config prices), so eight GPUs at 3.1 cost 24.8 an
hour, not 24.800000000000004, and the registered backend's price reads back as the same
decimal the gateway would have read from a config file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Context, Decimal

from gateway.node.base import GpuReading

_SECONDS_PER_HOUR = Decimal(3600)
_MILLION = Decimal(1_000_000)
_EXACT = Context(prec=40)


def gpu_hour_price(prices: Mapping[str, float], gpu_name: str) -> float | None:
    """The hourly price of one ``gpu_name`` GPU: the exact name's price, else the first
    case-insensitive match's (``nvidia h200`` prices ``NVIDIA H200``); None when unpriced."""
    price = prices.get(gpu_name)
    if price is not None:
        return price
    folded = gpu_name.casefold()
    for name, value in prices.items():
        if name.casefold() == folded:
            return value
    return None


def fleet_usd_per_hour(
    readings: Iterable[GpuReading], prices: Mapping[str, float]
) -> tuple[float, list[str]]:
    """What the node's GPUs cost per hour, and the GPU names that have no price (each once,
    in index order; those GPUs count as 0, so the agent should warn once)."""
    total = Decimal(0)
    unpriced: list[str] = []
    for reading in readings:
        price = gpu_hour_price(prices, reading.name)
        if price is None:
            if reading.name not in unpriced:
                unpriced.append(reading.name)
            continue
        total = _EXACT.add(total, _dec(price))
    return float(total), unpriced


def engine_usd_per_hour(gpu_names: Sequence[str], prices: Mapping[str, float]) -> float | None:
    """What an engine on GPUs ``gpu_names`` costs per hour; None when any of them is unpriced,
    or there are none (a partial or zero price would make it look cheaper than it is)."""
    if not gpu_names:
        return None
    total = Decimal(0)
    for name in gpu_names:
        price = gpu_hour_price(prices, name)
        if price is None:
            return None
        total = _EXACT.add(total, _dec(price))
    return float(total)


def usd_per_million_tokens(usd_per_hour: float, seconds: float, tokens: int) -> float | None:
    """What a million tokens cost at ``usd_per_hour`` when ``tokens`` took ``seconds``; None
    before the first token."""
    if tokens <= 0:
        return None
    usd = _EXACT.divide(_EXACT.multiply(_dec(usd_per_hour), _dec(seconds)), _SECONDS_PER_HOUR)
    return float(_EXACT.divide(_EXACT.multiply(usd, _MILLION), Decimal(tokens)))


def backend_price(usd_per_hour: float) -> dict[str, object]:
    """The ``price`` of a backend that costs ``usd_per_hour``: ``{"gpu_hour_usd": x}``.

    ``x`` is a float because the gateway's ``price.gpu_hour_usd`` is a config float (the
    admin API rejects a string); the gateway reads it back as ``Decimal(repr(x))``, the exact
    decimal the sums above produced.
    """
    return {"gpu_hour_usd": float(usd_per_hour)}


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))
