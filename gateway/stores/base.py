"""The response-store contract, registered through ``register_response_stores``.

What the Responses API (``store: true``, ``previous_response_id``) and stored chat completions
(``GET /v1/chat/completions``...) keep between requests. Every object lives under a
``(namespace, id)`` key, the namespace being the caller's ``Principal.namespace``: a key never
sees another key's objects, and a lookup in another namespace is simply not found. Objects
expire after the store's retention (``ttl_s``), counted on the injected
clock from the last :meth:`ResponseStore.put`.

A factory is called as ``factory(**options, clock=clock)`` with the store's config options
(raising ``ValueError`` or ``TypeError`` for bad ones, which the gateway reports naming the
field) and returns a :class:`ResponseStore`. A backend failure is raised as
:class:`StoreUnavailableError` (a 503 for the client), never as the driver's own exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

from gateway.errors import GatewayError, InvalidRequestError

Kind: TypeAlias = Literal["response", "chat.completion"]
"""What a stored object is: a Responses API ``response`` or a stored ``chat.completion``."""

KINDS: tuple[Kind, ...] = ("response", "chat.completion")

Order: TypeAlias = Literal["asc", "desc"]
"""Listing order by ``created_at`` (ties broken by ``id``)."""

Item: TypeAlias = dict[str, Any]
"""One Responses input/output item, or one chat message, as decoded JSON."""

Items: TypeAlias = list[Item]

DEFAULT_TTL_S = 30 * 24 * 3600.0
"""Default retention: 30 days, as OpenAI keeps stored objects."""


class StoredObject(msgspec.Struct, frozen=True, kw_only=True):
    """One stored response or chat completion.

    Attributes:
        id: the object's id (``resp_...``, ``chatcmpl-...``), unique within its namespace.
        kind: ``response`` or ``chat.completion``.
        created_at: Unix time (seconds) the object was created; the listing order.
        model: the model the client asked for (what ``GET /v1/chat/completions?model=`` filters).
        metadata: the client's string labels (what ``metadata[k]=v`` filters; what
            ``POST /v1/chat/completions/{id}`` replaces).
        status: ``completed``, ``in_progress``, ``incomplete``, ``failed``, ``cancelled``...
        input_items: the request's input as Responses input items (the turn's own input, not the
            history before it), or the request's messages for a stored chat completion.
        body: the response or completion object as the client got it (decoded JSON).
        previous_id: the ``previous_response_id`` this turn continued, or None.
    """

    id: str
    kind: Kind
    created_at: float
    model: str
    body: dict[str, Any]
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    status: str = "completed"
    input_items: Items = msgspec.field(default_factory=list)
    previous_id: str | None = None

    def output_items(self) -> Items:
        """What the model answered, as items that can follow ``input_items`` in a history: a
        response's ``output``, or a chat completion's first choice's ``message``."""
        if self.kind == "response":
            output = self.body.get("output")
            return [item for item in output if isinstance(item, dict)] if output else []
        choices = self.body.get("choices") or []
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        return [message] if isinstance(message, dict) else []

    def with_metadata(self, metadata: Mapping[str, str]) -> StoredObject:
        """This object with ``metadata`` replaced, in the record and in ``body``."""
        new = dict(metadata)
        return msgspec.structs.replace(self, metadata=new, body={**self.body, "metadata": new})

    def matches(self, metadata: Mapping[str, str] | None, model: str | None) -> bool:
        """Whether this object passes a listing's filters (every metadata pair, the model)."""
        if model is not None and self.model != model:
            return False
        return not metadata or all(self.metadata.get(k) == v for k, v in metadata.items())


class StoredPage(msgspec.Struct, frozen=True):
    """One page of a listing, in the order asked for.

    Attributes:
        data: the objects on this page (at most ``limit``).
        has_more: more objects follow the last one (ask again with ``after=last_id``).
    """

    data: tuple[StoredObject, ...]
    has_more: bool

    @property
    def first_id(self) -> str | None:
        return self.data[0].id if self.data else None

    @property
    def last_id(self) -> str | None:
        return self.data[-1].id if self.data else None


class StoreUnavailableError(GatewayError):
    """503: the response store could not be reached or failed; the request may be retried."""

    status = 503
    error_type = "api_error"
    default_code = "store_unavailable"


@runtime_checkable
class ResponseStore(Protocol):
    """Stored responses and chat completions, by ``(namespace, id)``, with retention.

    Every method raises :class:`StoreUnavailableError` when the backend fails.
    """

    async def put(self, namespace: str, record: StoredObject) -> None:
        """Store ``record`` (replacing one of the same id), to expire ``ttl_s`` from now."""
        ...

    async def get(self, namespace: str, id: str) -> StoredObject | None:
        """The object, or None when absent, expired or in another namespace."""
        ...

    async def delete(self, namespace: str, id: str) -> bool:
        """Forget the object; whether there was one (not expired) to forget."""
        ...

    async def list(
        self,
        namespace: str,
        kind: Kind,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
        metadata: Mapping[str, str] | None = None,
        model: str | None = None,
    ) -> StoredPage:
        """One page of the namespace's objects of ``kind`` by ``(created_at, id)``.

        Args:
            after: the id of the object the page starts after (the previous page's
                ``last_id``); an id that is not (or no longer) there gives an empty page.
            limit: most objects on the page, at least 1.
            order: ``asc`` (oldest first) or ``desc``.
            metadata: only objects whose metadata holds every one of these pairs.
            model: only objects of this model.

        Raises:
            ValueError: ``limit`` below 1 or an unknown ``order``.
        """
        ...

    async def update_metadata(
        self, namespace: str, id: str, metadata: Mapping[str, str]
    ) -> StoredObject | None:
        """Replace the object's metadata (in the record and its ``body``), keeping its expiry;
        the updated object, or None when there is none."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...


ResponseStoreFactory: TypeAlias = Callable[..., ResponseStore]
"""What ``register_response_stores`` registers; called as ``factory(**options, clock=clock)``
with the store's config options (``TypeError``/``ValueError`` for bad ones become config errors)
and the gateway's :class:`~gateway.clock.Clock`, which it reads for expiry."""


# Shared by the implementations: the options every store takes, and its arguments' checks.


def check_ttl(ttl_s: object) -> float:
    """``ttl_s`` as a positive, finite number of seconds.

    Raises:
        TypeError: not a number.
        ValueError: not positive or not finite.
    """
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise TypeError(f"`ttl_s` must be a number of seconds, got {ttl_s!r}")
    if not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"`ttl_s` must be positive, got {ttl_s!r}")
    return float(ttl_s)


def check_record(record: StoredObject) -> None:
    """Raises ``ValueError`` for a record no store can keep (an unknown ``kind``, no ``id``)."""
    if record.kind not in KINDS:
        raise ValueError(f"unknown stored object kind {record.kind!r}; one of {KINDS}")
    if not record.id:
        raise ValueError("a stored object needs an id")


MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


def check_metadata(metadata: object, param: str = "metadata") -> dict[str, str]:
    """A client's ``metadata`` checked as OpenAI does: at most 16 pairs of strings, keys up to
    64 characters, values up to 512.

    Raises:
        InvalidRequestError: it is not such a mapping (``param`` names the field).
    """
    if not isinstance(metadata, Mapping):
        raise InvalidRequestError(f"`{param}` must be an object of strings", param=param)
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequestError(
            f"`{param}` has {len(metadata)} pairs; at most {MAX_METADATA_PAIRS}", param=param
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidRequestError(f"`{param}` keys and values must be strings", param=param)
        if len(key) > MAX_METADATA_KEY:
            raise InvalidRequestError(
                f"`{param}` key `{key[:20]}...` is over {MAX_METADATA_KEY} characters",
                param=param,
            )
        if len(value) > MAX_METADATA_VALUE:
            raise InvalidRequestError(
                f"`{param}.{key}` is over {MAX_METADATA_VALUE} characters", param=param
            )
    return dict(metadata)


def check_list_args(limit: int, order: str) -> None:
    """Raises ``ValueError`` for a ``limit`` below 1 or an unknown ``order``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"`limit` must be a positive integer, got {limit!r}")
    if order not in ("asc", "desc"):
        raise ValueError(f"`order` must be `asc` or `desc`, got {order!r}")


_record_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(StoredObject)


def encode_record(record: StoredObject) -> bytes:
    """The record as JSON (how stores keep it)."""
    return _record_encoder.encode(record)


def decode_record(data: bytes | str) -> StoredObject:
    """A record stored by :func:`encode_record`.

    Raises:
        msgspec.DecodeError: not a stored record.
    """
    return _record_decoder.decode(data)
