"""When a request may be answered from the cache, and how its answer is stored.

Per request, ``Cache-Control`` (or the body's ``cache_control`` field, same syntax) may say
``no-cache`` (skip the lookup, store the fresh answer), ``no-store`` (bypass the cache entirely)
or ``max-age=N`` (accept an entry at most N seconds old).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.cache.coalesce import Flight
from gateway.cache.streams import Assembler, assembler_for
from gateway.cache.tiered import TieredCache

# Queues an off-path write; False when it could not be queued (gateway.background.Background).
Submit = Callable[[Callable[[], Awaitable[None]]], bool]


@dataclass(frozen=True, slots=True)
class CacheControl:
    """A request's cache directives."""

    no_cache: bool = False
    no_store: bool = False
    max_age: float | None = None


def parse_cache_control(*values: str | None) -> CacheControl:
    """Directives from the header and the body field (either may be None)."""
    no_cache = no_store = False
    max_age: float | None = None
    for value in values:
        for part in (value or "").lower().split(","):
            name, _, arg = part.strip().partition("=")
            if name == "no-cache":
                no_cache = True
            elif name == "no-store":
                no_store = True
            elif name == "max-age":
                try:
                    max_age = max(float(arg), 0.0)
                except ValueError:
                    continue
    return CacheControl(no_cache, no_store, max_age)


def is_deterministic(endpoint: str, body: dict[str, Any]) -> bool:
    """Embeddings always; generations when temperature is 0 or a seed is given."""
    if endpoint == "embeddings":
        return True
    return body.get("temperature") == 0 or body.get("seed") is not None


class CacheStore:
    """Stores one request's answer under its key, off the request's path, and shares it with
    the requests following its flight (:mod:`gateway.cache.coalesce`).

    Writes go through the app's off-path queue and run off the request's path; when the queue
    is full the answer is shared with the followers but not stored.

    Attributes:
        flight: the upstream call's flight (in the coalescer's table when this request leads).
        keep_usage: whether the client asked for the usage chunk of a stream (the upstream is
            always asked for it, so that entries carry usage).
    """

    def __init__(
        self,
        cache: TieredCache,
        key: str,
        ttl_s: float,
        endpoint: str,
        flight: Flight,
        submit: Submit,
        keep_usage: bool = True,
    ) -> None:
        self.cache = cache
        self._submit = submit
        self.key = key
        self.ttl_s = ttl_s
        self.endpoint = endpoint
        self.flight = flight
        self.keep_usage = keep_usage

    def save(self, answer: bytes) -> None:
        """Store a complete (successful) JSON response; followers get it at once. A Responses
        API answer that did not complete (failed, incomplete) is shared with no one and not
        stored: the followers go upstream themselves."""
        if not worth_keeping(self.endpoint, answer):
            self.release()
            return
        flight = self.flight
        flight.finish(answer)
        created = self.cache.clock.time()  # the entry's age counts from now, not the write

        async def write() -> None:
            try:
                await self.cache.set(self.key, answer, self.ttl_s, created)
            finally:
                flight.retire()  # later requests find the entry in the cache now

        if not self._submit(write):
            flight.retire()

    def release(self, error: Exception | None = None) -> None:
        """The request ended without an answer to store (a no-op once :meth:`save` was
        called): followers get ``error`` when there is one, else go upstream themselves."""
        self.flight.finish(None, error)

    def assembler(self) -> Assembler:
        """Records a stream (in the client's format); call :meth:`save` with its result when
        it completed."""
        return assembler_for(self.endpoint)


class _Status(msgspec.Struct):
    status: str | None = None


_status = msgspec.json.Decoder(_Status)


def worth_keeping(endpoint: str, answer: bytes) -> bool:
    """Whether a successful answer may be cached: a Responses API answer only when its status
    is ``completed`` (a failed or cut-short one says nothing about the next request)."""
    if endpoint != "responses":
        return True
    try:
        return _status.decode(answer).status == "completed"
    except msgspec.MsgspecError:
        return False
