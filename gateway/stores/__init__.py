"""Stored responses and chat completions: the :class:`~gateway.stores.base.ResponseStore`
contract, its record, and the conversation walk over ``previous_response_id`` links.

The implementations are plugins (``register_response_stores``): ``sqlite`` (one box, a file)
and ``redis`` (a fleet) are built in.
"""

from gateway.stores.base import (
    DEFAULT_TTL_S,
    KINDS,
    Item,
    Items,
    Kind,
    Order,
    ResponseStore,
    ResponseStoreFactory,
    StoredObject,
    StoredPage,
    StoreUnavailableError,
    check_metadata,
)
from gateway.stores.chain import (
    MAX_CHAIN_DEPTH,
    BrokenChainError,
    ChainTooLongError,
    chain,
    conversation,
)

__all__ = [
    "DEFAULT_TTL_S",
    "KINDS",
    "MAX_CHAIN_DEPTH",
    "BrokenChainError",
    "ChainTooLongError",
    "Item",
    "Items",
    "Kind",
    "Order",
    "ResponseStore",
    "ResponseStoreFactory",
    "StoreUnavailableError",
    "StoredObject",
    "StoredPage",
    "chain",
    "check_metadata",
    "conversation",
]
