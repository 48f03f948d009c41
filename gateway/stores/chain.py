"""Rebuilding a Responses conversation from ``previous_response_id`` links."""

from __future__ import annotations

from gateway.errors import InvalidRequestError
from gateway.stores.base import Items, ResponseStore, StoredObject

MAX_CHAIN_DEPTH = 100
"""Most turns :func:`conversation` walks back before it gives up."""


class BrokenChainError(InvalidRequestError):
    """400: a ``previous_response_id`` link leads to no stored response (never stored, deleted,
    expired, or another key's).

    Attributes:
        missing_id: the id that was not found.
        depth: how many links back it was (0: the id asked for itself).
    """

    default_code = "previous_response_not_found"

    def __init__(self, missing_id: str, depth: int) -> None:
        where = "" if depth == 0 else f" ({depth} turns back in the conversation)"
        super().__init__(
            f"Previous response with id '{missing_id}' not found{where}.",
            param="previous_response_id",
        )
        self.missing_id = missing_id
        self.depth = depth


class ChainTooLongError(InvalidRequestError):
    """400: the conversation is longer than the walk allows, or loops back on itself."""

    default_code = "conversation_too_long"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="previous_response_id")


async def chain(
    store: ResponseStore, namespace: str, id: str, *, max_depth: int = MAX_CHAIN_DEPTH
) -> list[StoredObject]:
    """The turns ending with ``id``, oldest first, following ``previous_id`` links.

    Raises:
        BrokenChainError: a link (or ``id`` itself) is not in the namespace.
        ChainTooLongError: more than ``max_depth`` turns, or a link loops back.
        StoreUnavailableError: the store failed.
    """
    turns: list[StoredObject] = []
    seen: set[str] = set()
    current: str | None = id
    while current is not None:
        if current in seen:
            raise ChainTooLongError(f"The conversation of response '{id}' loops at '{current}'.")
        if len(turns) >= max_depth:
            raise ChainTooLongError(
                f"The conversation of response '{id}' is longer than {max_depth} turns."
            )
        record = await store.get(namespace, current)
        if record is None:
            raise BrokenChainError(current, len(turns))
        seen.add(current)
        turns.append(record)
        current = record.previous_id
    turns.reverse()
    return turns


async def conversation(
    store: ResponseStore, namespace: str, id: str, *, max_depth: int = MAX_CHAIN_DEPTH
) -> Items:
    """The history a request with ``previous_response_id=id`` continues: for each turn, oldest
    first, its input items and then its output items.

    Raises:
        BrokenChainError: a link (or ``id`` itself) is not in the namespace.
        ChainTooLongError: more than ``max_depth`` turns, or a link loops back.
        StoreUnavailableError: the store failed.
    """
    items: Items = []
    for turn in await chain(store, namespace, id, max_depth=max_depth):
        items.extend(turn.input_items)
        items.extend(turn.output_items())
    return items
