"""The ``price_table`` cost policy: prices usage from the gateway's :class:`PriceBook` (the
config's per-backend prices, else the offline genai-prices table, else zero).

It takes no options. The book is built by the gateway from its model catalog, after the policy
is (policies are built from ``factory(**options)`` with config options only), and handed over
with :meth:`PriceTablePolicy.bind`; before that, or for a backend the book does not know,
:meth:`cost` answers None (the next policy, or zero). It has no opinion on routing.
"""

from __future__ import annotations

from gateway.cost.base import BaseCostPolicy, UsageRecord
from gateway.governance.pricing import PriceBook


class PriceTablePolicy(BaseCostPolicy):
    """Prices a finished request from the book's price of the backend that served it.

    Args:
        book: the price book, when known at construction (else :meth:`bind` it).
    """

    def __init__(self, *, book: PriceBook | None = None) -> None:
        self._book = book

    def bind(self, book: PriceBook) -> None:
        """Price from ``book`` from now on (at start-up, and again after a reload)."""
        self._book = book

    def cost(self, usage: UsageRecord) -> int | None:
        book = self._book
        price = None if book is None else book.get(usage.backend)
        if price is None:
            return None
        return price.cost_nanos(
            usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens, usage.busy_s
        )
