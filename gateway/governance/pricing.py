"""What each backend charges, resolved once at start-up: :class:`Price`, :func:`resolve_price`
and the :class:`PriceBook` that the request path reads.

A backend's price comes from, in order:

1. its ``price:`` in the config (``source="config"``);
2. the offline ``genai-prices`` table, by the upstream model name, with the provider id that its
   provider type implies (``openai``, ``anthropic``); other provider types (``vllm``...) are
   looked up without a provider id (``source="genai-prices"``); the bundled snapshot only, never
   the network;
3. zero (``source="none"``), with a start-up warning.

Money is exact: prices are :class:`~decimal.Decimal` US dollars per million tokens, and a cost
is an integer number of nano-dollars rounded half-even, so the same usage always costs the same
nano-dollar in every replica and every report.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal
from typing import Literal

from gateway.cost.base import GroupFacts
from gateway.routing.backends import ModelCatalog
from gateway.settings import BackendSettings, ModelGroupSettings, PriceSettings

PriceSource = Literal["config", "genai-prices", "none"]

_ZERO = Decimal(0)
_MTOK = Decimal(1_000_000)
_NANOS_PER_MTOK_USD = Decimal(1000)  # $1 per million tokens = 1,000 nano-dollars per token
_NANOS_PER_USD = Decimal(1_000_000_000)
_SECONDS_PER_HOUR = Decimal(3600)
# Enough digits that no realistic sum (billions of tokens, thousands of dollars per million
# tokens, nano-dollar precision) is ever rounded before the final rounding to a nano-dollar.
_EXACT = Context(prec=60)

# Provider types whose upstream model names are the provider's own (genai-prices ids).
_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic"}


def _dec(value: float) -> Decimal:
    """A config float as the decimal it was written as (``0.15`` → ``Decimal("0.15")``)."""
    return Decimal(repr(float(value)))


@dataclass(frozen=True, slots=True)
class Price:
    """What a backend charges.

    Attributes:
        input_per_mtok: US dollars per million prompt tokens (not served from a cache).
        cached_input_per_mtok: per million prompt tokens served from a prompt or prefix cache.
        output_per_mtok: per million completion tokens.
        gpu_hour_usd: set for GPU-time pricing: the replica's hourly rate; token rates are then
            ignored.
        gpu_tokens_per_s: with ``gpu_hour_usd``, the slowest output rate assumed for a
            request's worst case.
        source: where the price came from.
    """

    input_per_mtok: Decimal = _ZERO
    cached_input_per_mtok: Decimal = _ZERO
    output_per_mtok: Decimal = _ZERO
    gpu_hour_usd: Decimal | None = None
    gpu_tokens_per_s: float = 20.0
    source: PriceSource = "none"

    @property
    def free(self) -> bool:
        """Whether everything costs nothing."""
        if self.gpu_hour_usd is not None:
            return self.gpu_hour_usd == 0
        return not (self.input_per_mtok or self.cached_input_per_mtok or self.output_per_mtok)

    def cost_nanos(
        self, prompt_tokens: int, cached_tokens: int, completion_tokens: int, busy_s: float = 0.0
    ) -> int:
        """What a request cost, in nano-dollars, rounded half-even.

        ``cached_tokens`` are part of ``prompt_tokens`` and priced at the cached rate. With GPU
        pricing the cost is ``gpu_hour_usd * busy_s / 3600`` (``busy_s``: the request's share of
        its replica's busy time, which the caller measures) and the tokens do not count.
        """
        if self.gpu_hour_usd is not None:
            usd = _EXACT.divide(
                _EXACT.multiply(self.gpu_hour_usd, Decimal(max(busy_s, 0.0))), _SECONDS_PER_HOUR
            )
            return int(_EXACT.multiply(usd, _NANOS_PER_USD).to_integral_value(ROUND_HALF_EVEN))
        cached = min(max(cached_tokens, 0), max(prompt_tokens, 0))
        fresh = max(prompt_tokens, 0) - cached
        per_mtok = _EXACT.add(
            _EXACT.add(
                _EXACT.multiply(Decimal(fresh), self.input_per_mtok),
                _EXACT.multiply(Decimal(cached), self.cached_input_per_mtok),
            ),
            _EXACT.multiply(Decimal(max(completion_tokens, 0)), self.output_per_mtok),
        )
        nanos = _EXACT.multiply(per_mtok, _NANOS_PER_MTOK_USD)
        return int(nanos.to_integral_value(ROUND_HALF_EVEN))

    def worst_case_nanos(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The most a request of this size may cost, in nano-dollars (rounded up), to reserve
        against budgets: no cache discount; with GPU pricing, ``completion_tokens`` at
        ``gpu_tokens_per_s`` at the hourly rate."""
        if self.gpu_hour_usd is not None:
            seconds = _EXACT.divide(Decimal(max(completion_tokens, 0)), _dec(self.gpu_tokens_per_s))
            usd = _EXACT.divide(_EXACT.multiply(self.gpu_hour_usd, seconds), _SECONDS_PER_HOUR)
            return int(_EXACT.multiply(usd, _NANOS_PER_USD).to_integral_value(ROUND_CEILING))
        per_mtok = _EXACT.add(
            _EXACT.multiply(Decimal(max(prompt_tokens, 0)), self.input_per_mtok),
            _EXACT.multiply(Decimal(max(completion_tokens, 0)), self.output_per_mtok),
        )
        return int(_EXACT.multiply(per_mtok, _NANOS_PER_MTOK_USD).to_integral_value(ROUND_CEILING))

    def per_mtok(self) -> tuple[float, float]:
        """(input, output) US dollars per million tokens, as floats, for routing and cost
        policies; GPU pricing reads as its worst-case output rate."""
        if self.gpu_hour_usd is not None:
            per_token = self.gpu_hour_usd / _SECONDS_PER_HOUR / _dec(self.gpu_tokens_per_s)
            return 0.0, float(per_token * _MTOK)
        return float(self.input_per_mtok), float(self.output_per_mtok)


NO_PRICE = Price()


def price_from_settings(price: PriceSettings) -> Price:
    """A config ``price:`` as a :class:`Price` (``source="config"``)."""
    inp = _dec(price.input_per_mtok)
    cached = inp if price.cached_input_per_mtok is None else _dec(price.cached_input_per_mtok)
    return Price(
        input_per_mtok=inp,
        cached_input_per_mtok=cached,
        output_per_mtok=_dec(price.output_per_mtok),
        gpu_hour_usd=None if price.gpu_hour_usd is None else _dec(price.gpu_hour_usd),
        gpu_tokens_per_s=price.gpu_tokens_per_s,
        source="config",
    )


@functools.lru_cache(maxsize=1024)
def _genai_price(model: str, provider_id: str | None) -> Price | None:
    """The bundled genai-prices rates of ``model`` (None when it is not in the table).

    Each rate is the price of a million tokens of that kind, so tiered or odd pricing models
    reduce to one per-token figure (their rate at a million tokens).
    """
    # Imported here: the table is large and only start-up (and reloads) need it.
    from genai_prices import Usage, calc_price

    million = 1_000_000

    def total(usage: Usage) -> Decimal:
        return calc_price(usage, model, provider_id=provider_id).total_price

    try:
        inp = total(Usage(input_tokens=million))
        out = total(Usage(output_tokens=million))
        cached = total(Usage(input_tokens=million, cache_read_tokens=million))
    except (LookupError, ValueError, TypeError, ArithmeticError):
        return None
    return Price(
        input_per_mtok=inp,
        cached_input_per_mtok=cached,
        output_per_mtok=out,
        source="genai-prices",
    )


def resolve_price(settings: BackendSettings, provider: str, model: str) -> Price:
    """The price of a backend: its config ``price``, else the genai-prices table for ``model``
    (the upstream model name) under ``provider`` (the provider type), else zero."""
    if settings.price is not None:
        return price_from_settings(settings.price)
    found = _genai_price(model, _PROVIDER_IDS.get(provider))
    return found if found is not None else NO_PRICE


@dataclass(frozen=True, slots=True)
class _Entry:
    backend: str
    group: str
    price: Price
    context_window: int


class PriceBook:
    """Every backend's price and every group's cost facts, computed once (the request path
    only reads dicts).

    Built from the live catalog (a backend is matched with its ``BackendSettings`` by name, to
    know its provider type and full price); a backend added at runtime that the group's settings
    do not list is priced from its spec (its config token prices, else genai-prices without a
    provider id). Build a new book after a reload.
    """

    def __init__(self, catalog: ModelCatalog) -> None:
        entries: list[_Entry] = []
        groups: list[ModelGroupSettings] = []
        for group in catalog.groups:
            gs = group.settings
            groups.append(gs)
            by_name = {bs.name or f"{gs.name}-{i}": bs for i, bs in enumerate(gs.backends)}
            for backend in group.backends:
                spec = backend.spec
                bs = by_name.get(backend.name)
                if bs is not None:
                    price = resolve_price(bs, bs.provider, spec.model)
                elif spec.input_price or spec.output_price:
                    price = price_from_settings(
                        PriceSettings(
                            input_per_mtok=spec.input_price, output_per_mtok=spec.output_price
                        )
                    )
                else:
                    price = _genai_price(spec.model, None) or NO_PRICE
                entries.append(_Entry(backend.name, group.name, price, spec.context_window))
        self._build(entries, groups)

    @classmethod
    def from_settings(cls, models: Iterable[ModelGroupSettings]) -> PriceBook:
        """A book from the config alone (backends named as the catalog names them)."""
        book = cls.__new__(cls)
        entries: list[_Entry] = []
        groups = list(models)
        for gs in groups:
            for i, bs in enumerate(gs.backends):
                price = resolve_price(bs, bs.provider, bs.model or gs.name)
                entries.append(
                    _Entry(bs.name or f"{gs.name}-{i}", gs.name, price, bs.context_window)
                )
        book._build(entries, groups)
        return book

    def _build(self, entries: list[_Entry], groups: list[ModelGroupSettings]) -> None:
        self._prices: dict[str, Price] = {e.backend: e.price for e in entries}
        self._by_group: dict[str, list[_Entry]] = {}
        for e in entries:
            self._by_group.setdefault(e.group, []).append(e)
        self._facts: dict[str, GroupFacts] = {}
        for gs in groups:
            members = self._by_group.get(gs.name, [])
            windows = [e.context_window for e in members if e.context_window]
            dearest = max(
                (e.price.per_mtok() for e in members), key=lambda p: p[0] + p[1], default=(0, 0)
            )
            self._facts[gs.name] = GroupFacts(
                name=gs.name,
                context_window=min(windows, default=0),
                capabilities=None if gs.capabilities is None else frozenset(gs.capabilities),
                input_per_mtok=dearest[0],
                output_per_mtok=dearest[1],
            )
        self._warnings = [
            f"backend `{e.backend}` of `{e.group}` has no price: its usage is recorded at $0; "
            "set `price:`"
            for e in entries
            if e.price.source == "none"
        ]

    def get(self, backend: str) -> Price | None:
        """The price of backend ``backend``; None when the book does not know it."""
        return self._prices.get(backend)

    def for_backend(self, backend: str) -> Price:
        """The price of backend ``backend`` (zero, ``source="none"``, when unknown)."""
        return self._prices.get(backend, NO_PRICE)

    def group_facts(self, group: str) -> GroupFacts:
        """What cost policies may know of model group ``group`` (bare facts when unknown)."""
        facts = self._facts.get(group)
        return facts if facts is not None else GroupFacts(name=group)

    @property
    def facts(self) -> dict[str, GroupFacts]:
        """Every group's facts by name (for ``Situation.groups``; do not modify)."""
        return self._facts

    def worst_case_nanos(self, group: str, prompt_tokens: int, completion_tokens: int) -> int:
        """The most a request to ``group`` may cost: the maximum over its backends (0 when the
        group is unknown or free)."""
        return max(
            (
                e.price.worst_case_nanos(prompt_tokens, completion_tokens)
                for e in self._by_group.get(group, ())
            ),
            default=0,
        )

    def warnings(self) -> list[str]:
        """One line per backend priced at zero for want of a price (log them at start-up)."""
        return list(self._warnings)
