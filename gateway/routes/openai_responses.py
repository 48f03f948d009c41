"""OpenAI's Responses API: the ``POST /v1/responses`` dialect.

Backends that speak it natively (OpenAI; a vLLM with ``responses: true``) get the client's bytes
relayed, as for chat; every other backend gets the request translated to Chat Completions and
its answers, plain or streamed, translated back (:mod:`gateway.translate.responses`).

The gateway owns the conversation state, whatever the backend: a stored response
(``store`` defaults to true) goes to the response store under the caller's namespace, and a
``previous_response_id`` is resolved there into the earlier turns, sent as ``input`` (to a
native backend too, which then needs no state of its own, so any replica can serve any turn).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.cache.streams import ResponsesAssembler
from gateway.codec import decode, decode_request, encode
from gateway.errors import InvalidRequestError
from gateway.pipeline.context import Converter, RequestContext, StreamConverter
from gateway.providers.base import Endpoint, UpstreamRequest, endpoints_of
from gateway.routes.errors import OPENAI_ERRORS
from gateway.routing.backends import Backend
from gateway.schemas.responses import ResponsesRequest
from gateway.sse import SSEFramer, encode_event, parse_event
from gateway.stores.base import StoredObject
from gateway.stores.chain import conversation
from gateway.translate.responses import (
    chat_response_to_response,
    input_items,
    new_response_id,
    responses_request_to_chat,
)
from gateway.translate.responses_stream import ChatStreamToResponses
from gateway.translate.streams import TranslatingStream

# Echoed in a Response but left out of cache keys (gateway.cache.keys): a shared answer takes
# this request's values, the API's defaults, or leaves them out.
ECHOED_UNKEYED = ("metadata", "store", "user", "service_tier")
DEFAULTS: dict[str, Any] = {"metadata": {}, "store": True}


class _IdOnly(msgspec.Struct):
    id: Any = None


_id_only = msgspec.json.Decoder(_IdOnly)  # reads just `id`, skipping the rest of a Response


def speaks_responses(backend: Backend) -> bool:
    """Whether ``backend`` serves the Responses API natively."""
    return Endpoint.RESPONSES in endpoints_of(backend.provider)


@dataclass(slots=True)
class Turn:
    """What one Responses request prepared before dispatch.

    Attributes:
        response_id: the id of a translated answer (``resp_...``).
        created_at: its creation time (Unix seconds).
        history: the earlier turns' items, when it continues a stored response.
        chat: the request translated to Chat Completions, when some backend needs it.
    """

    response_id: str
    created_at: int
    history: list[dict[str, Any]] | None = None
    chat: dict[str, Any] | None = None


class ChatToResponses:
    """Converts a chat backend's answers to Responses objects and events."""

    __slots__ = ("_request", "_turn")

    def __init__(self, request: dict[str, Any], turn: Turn) -> None:
        self._request = request
        self._turn = turn

    def body(self, data: bytes) -> bytes:
        return encode(
            chat_response_to_response(
                decode(data),
                self._request,
                response_id=self._turn.response_id,
                created_at=self._turn.created_at,
                completed_at=int(time.time()),
            )
        )

    def stream(self) -> StreamConverter:
        translator = ChatStreamToResponses(
            self._request, response_id=self._turn.response_id, created_at=self._turn.created_at
        )
        return TranslatingStream(translator)


class ContinuedNative:
    """A native backend's answer to a continued conversation, which it got as plain ``input``:
    its Response names the ``previous_response_id`` the client sent, in a body and in the
    events of a stream that carry the Response."""

    __slots__ = ("_previous",)

    def __init__(self, previous: str) -> None:
        self._previous = previous

    def body(self, data: bytes) -> bytes:
        response = decode(data)
        if isinstance(response, dict):
            response["previous_response_id"] = self._previous
        return encode(response)

    def stream(self) -> StreamConverter:
        return _LinkedEvents(self._previous)


class _LinkedEvents:
    """Sets ``previous_response_id`` in the Response carried by stream events (created,
    in_progress, completed...); every other event passes as it came."""

    __slots__ = ("_framer", "_previous")

    def __init__(self, previous: str) -> None:
        self._framer = SSEFramer()
        self._previous = previous

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._linked(event) for event in self._framer.feed(chunk))

    def finish(self) -> bytes:
        return self._framer.flush()

    def _linked(self, event: bytes) -> bytes:
        if b'"previous_response_id"' not in event:
            return event
        parsed = parse_event(event)
        try:
            data = decode(parsed.data) if parsed is not None else None
        except msgspec.DecodeError:
            return event
        response = data.get("response") if isinstance(data, dict) else None
        if not isinstance(response, dict) or parsed is None:
            return event
        response["previous_response_id"] = self._previous
        return encode_event(encode(data), parsed.name)


class ResponsesDialect:
    """``POST /v1/responses``. Satisfies :class:`gateway.pipeline.context.Dialect`."""

    endpoint = "responses"
    errors = OPENAI_ERRORS
    streams = True
    cacheable = True
    batchable = False
    # Followers of an identical request in flight get its complete answer under their own id
    # (a live stream's bytes carry the leader's id in every event).
    follows_live = False

    def __init__(self) -> None:
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(ResponsesRequest)

    def decode(self, body: bytes) -> Any:
        return decode_request(body, self._decoder)

    async def prepare(self, ctx: RequestContext) -> None:
        """Load the earlier turns of ``previous_response_id``; translate for chat backends
        (refusing, with the field named, what Chat Completions cannot carry)."""
        raw = ctx.raw
        turn = Turn(new_response_id(), int(time.time()))
        previous = raw.get("previous_response_id")
        if previous is not None:
            if not isinstance(previous, str) or ctx.store is None:
                raise InvalidRequestError(
                    "`previous_response_id` must name a stored response.",
                    param="previous_response_id",
                )
            turn.history = await conversation(ctx.store, ctx.principal.namespace, previous)
        if ctx.chat_only or not all(speaks_responses(b) for b in ctx.model_group.backends):
            # The cache stage reads (and removes) the gateway's own `cache_control` later; it
            # is never part of what a backend is sent.
            request = {k: v for k, v in raw.items() if k != "cache_control"}
            turn.chat = responses_request_to_chat(request, history=turn.history)
        ctx.turn = turn

    def upstream_request(self, ctx: RequestContext, backend: Backend) -> UpstreamRequest:
        turn: Turn = ctx.turn
        model = backend.model
        if speaks_responses(backend) and not ctx.chat_only:
            if turn.history is None:
                body = ctx.body_for(model)
            else:
                body = ctx.encoded(f"native:{model}", lambda: self._native_body(ctx, model))
            return UpstreamRequest(Endpoint.RESPONSES, body, ctx.raw, ctx.stream, ctx.request_id)
        chat = turn.chat
        assert chat is not None  # prepared for every group with a chat backend
        body = ctx.encoded(f"chat:{model}", lambda: encode({**chat, "model": model}))
        return UpstreamRequest(Endpoint.CHAT, body, chat, ctx.stream, ctx.request_id)

    @staticmethod
    def _native_body(ctx: RequestContext, model: str) -> bytes:
        """A continued conversation for a native backend: the history as ``input``, no link
        to a response the backend never stored."""
        turn: Turn = ctx.turn
        body = {k: v for k, v in ctx.raw.items() if k != "previous_response_id"}
        body["input"] = [*(turn.history or []), *input_items(ctx.raw)]
        body["model"] = model
        return encode(body)

    def converter(self, ctx: RequestContext, backend: Backend) -> Converter | None:
        if not speaks_responses(backend) or ctx.chat_only:
            return ChatToResponses(ctx.raw, ctx.turn)
        if ctx.turn.history is not None:
            return ContinuedNative(ctx.payload.previous_response_id)
        return None

    def fresh(self, ctx: RequestContext, answer: bytes) -> bytes:
        """A shared answer (from the cache, or an identical request) under this request's own
        response id: the id, and the item ids made from it, renamed."""
        try:
            shared = _id_only.decode(answer).id
        except msgspec.MsgspecError:
            return answer  # not a Response object: nothing to rename
        if not isinstance(shared, str) or not shared.startswith("resp_"):
            return answer
        old, new = shared.removeprefix("resp_"), ctx.turn.response_id.removeprefix("resp_")
        response = decode(answer.replace(old.encode(), new.encode()))
        # What the cache key leaves out, and a Response echoes, is this request's own.
        for field in ECHOED_UNKEYED:
            if field in ctx.raw:
                response[field] = ctx.raw[field]
            elif field in DEFAULTS:
                response[field] = DEFAULTS[field]
            else:
                response.pop(field, None)
        return encode(response)

    def keeps(self, ctx: RequestContext) -> bool:
        """Stored unless the client said ``store: false`` (OpenAI's default is to store)."""
        return ctx.payload.store is not False

    def record(self, ctx: RequestContext, answer: bytes) -> StoredObject:
        body = decode(answer)
        return StoredObject(
            id=str(body.get("id") or ctx.turn.response_id),
            kind="response",
            created_at=float(body.get("created_at") or ctx.turn.created_at),
            model=ctx.model,
            body=body,
            metadata=dict(ctx.payload.metadata or {}),
            status=str(body.get("status") or "completed"),
            input_items=input_items(ctx.raw),
            previous_id=ctx.payload.previous_response_id,
        )

    def recorder(self, ctx: RequestContext) -> ResponsesAssembler:
        return ResponsesAssembler()


RESPONSES = ResponsesDialect()
