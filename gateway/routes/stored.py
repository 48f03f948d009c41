"""Stored responses and chat completions, read back by the key that stored them.

- ``GET /v1/responses/{id}``, ``DELETE /v1/responses/{id}``,
  ``GET /v1/responses/{id}/input_items``, ``POST /v1/responses/{id}/cancel``;
- ``GET /v1/chat/completions`` (a page, filtered by ``model`` and ``metadata[k]=v``),
  ``GET|POST|DELETE /v1/chat/completions/{id}``, ``GET /v1/chat/completions/{id}/messages``.

Every lookup is in the caller's namespace (:attr:`gateway.identity.Principal.namespace`): an
object stored with another key is not found. Lists take ``after``, ``limit`` (1 to 100) and
``order``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler

from gateway.codec import decode, encode
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.routes.openai import request_id_of
from gateway.state import GatewayState
from gateway.stores.base import Kind, StoredObject, check_metadata

JSON = "application/json"
MAX_LIMIT = 100
AnyRequest = Request[Any, Any, Any]


def _limit(request: AnyRequest) -> int:
    value = request.query_params.get("limit", "20")
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidRequestError(
            f"`limit` must be an integer from 1 to {MAX_LIMIT}.", param="limit"
        )
    return int(value)


def _order(request: AnyRequest, default: str) -> str:
    order = request.query_params.get("order", default)
    if order not in ("asc", "desc"):
        raise InvalidRequestError("`order` must be `asc` or `desc`.", param="order")
    return order


def _metadata_filter(request: AnyRequest) -> dict[str, str] | None:
    """``metadata[key]=value`` query parameters (OpenAI's deep-object style)."""
    pairs = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    return pairs or None


def page_of(
    items: Sequence[dict[str, Any]], after: str | None, limit: int, order: str
) -> dict[str, Any]:
    """One page of a list of items with ids (a stored object's input items or messages)."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    if after is not None:
        ids = [item.get("id") for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    data = ordered[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(ordered) > limit,
    }


def input_item_resources(record: StoredObject) -> list[dict[str, Any]]:
    """A response's input items as the API lists them: each with an id, message content as a
    list of parts."""
    out = []
    for n, item in enumerate(record.input_items):
        resource = dict(item)
        resource.setdefault("id", f"msg_{record.id.removeprefix('resp_')}_in{n}")
        if resource.get("type", "message") == "message":
            resource["type"] = "message"
            content = resource.get("content")
            if isinstance(content, str):
                kind = "output_text" if resource.get("role") == "assistant" else "input_text"
                resource["content"] = [{"type": kind, "text": content}]
            resource.setdefault("status", "completed")
        out.append(resource)
    return out


def message_resources(record: StoredObject) -> list[dict[str, Any]]:
    """A stored completion's request messages as the API lists them: each with an id; parts
    kept in ``content_parts``, text joined in ``content``."""
    out = []
    for n, message in enumerate(record.input_items):
        content = message.get("content")
        parts = content if isinstance(content, list) else None
        text = (
            "".join(p.get("text", "") for p in parts if isinstance(p, dict))
            if parts is not None
            else content
        )
        out.append(
            {
                "id": f"{record.id}-{n}",
                "role": message.get("role"),
                "content": text,
                "content_parts": parts,
                "refusal": None,
                **({"name": message["name"]} if "name" in message else {}),
            }
        )
    return out


def build_stored_routes(state: GatewayState) -> list[HTTPRouteHandler]:
    """The routes of stored objects, bound to ``state``."""
    store, auth = state.store, state.auth

    def answer(request: AnyRequest, body: Any) -> Response[Any]:
        return Response(
            encode(body), media_type=JSON, headers={"x-request-id": request_id_of(request)}
        )

    async def find(request: AnyRequest, kind: Kind, param: str) -> tuple[str, StoredObject]:
        """The caller's namespace and the stored object the path names.

        Raises:
            NotFoundError: none of that kind in the caller's namespace.
        """
        namespace = (await auth.authenticate(request.headers)).namespace
        object_id = str(request.path_params["object_id"])
        record = await store.get(namespace, object_id)
        if record is None or record.kind != kind:
            noun = "Response" if kind == "response" else "Chat completion"
            raise NotFoundError(f"{noun} with id '{object_id}' not found.", param=param)
        return namespace, record

    def route(
        decorator: Callable[..., Any], path: str, kind: Kind, param: str
    ) -> Callable[[Callable[..., Any]], HTTPRouteHandler]:
        """A handler of ``path`` given the stored object it names."""

        def wrap(handle: Callable[..., Any]) -> HTTPRouteHandler:
            async def handler(request: AnyRequest) -> Response[Any]:
                namespace, record = await find(request, kind, param)
                return answer(request, await handle(request, namespace, record))

            handler.__name__ = handle.__name__
            return decorator(path, status_code=200)(handler)  # type: ignore[no-any-return]

        return wrap

    responses = "/v1/responses/{object_id:str}"
    completions = "/v1/chat/completions/{object_id:str}"

    @route(get, responses, "response", "response_id")
    async def get_response(_: AnyRequest, __: str, record: StoredObject) -> Any:
        return record.body

    @route(delete, responses, "response", "response_id")
    async def delete_response(_: AnyRequest, namespace: str, record: StoredObject) -> Any:
        await store.delete(namespace, record.id)
        return {"id": record.id, "object": "response", "deleted": True}

    @route(get, f"{responses}/input_items", "response", "response_id")
    async def input_items(request: AnyRequest, _: str, record: StoredObject) -> Any:
        items = input_item_resources(record)
        return page_of(
            items, request.query_params.get("after"), _limit(request), _order(request, "desc")
        )

    @route(post, f"{responses}/cancel", "response", "response_id")
    async def cancel(_: AnyRequest, __: str, record: StoredObject) -> Any:
        # Only background responses can be cancelled, and the gateway runs none (`background`
        # is refused): a stored response is already finished.
        raise InvalidRequestError(
            f"Response '{record.id}' cannot be cancelled: only background responses can be.",
            param="response_id",
            code="not_cancellable",
        )

    @route(get, completions, "chat.completion", "completion_id")
    async def get_completion(_: AnyRequest, __: str, record: StoredObject) -> Any:
        return record.body

    @route(post, completions, "chat.completion", "completion_id")
    async def update_completion(request: AnyRequest, namespace: str, record: StoredObject) -> Any:
        try:
            body = decode(await request.body())
        except Exception:  # noqa: BLE001 - any unreadable body is the client's mistake
            raise InvalidRequestError("The request body is not valid JSON.") from None
        if not isinstance(body, Mapping) or "metadata" not in body:
            raise InvalidRequestError("`metadata` is required.", param="metadata")
        updated = await store.update_metadata(
            namespace, record.id, check_metadata(body["metadata"])
        )
        return (updated or record).body

    @route(delete, completions, "chat.completion", "completion_id")
    async def delete_completion(_: AnyRequest, namespace: str, record: StoredObject) -> Any:
        await store.delete(namespace, record.id)
        return {"object": "chat.completion.deleted", "id": record.id, "deleted": True}

    @route(get, f"{completions}/messages", "chat.completion", "completion_id")
    async def messages(request: AnyRequest, _: str, record: StoredObject) -> Any:
        return page_of(
            message_resources(record),
            request.query_params.get("after"),
            _limit(request),
            _order(request, "asc"),
        )

    @get("/v1/chat/completions")
    async def list_completions(request: AnyRequest) -> Response[Any]:
        namespace = (await auth.authenticate(request.headers)).namespace
        listed = await store.list(
            namespace,
            "chat.completion",
            after=request.query_params.get("after"),
            limit=_limit(request),
            order=_order(request, "asc"),  # type: ignore[arg-type]
            metadata=_metadata_filter(request),
            model=request.query_params.get("model"),
        )
        data = [record.body for record in listed.data]
        return answer(
            request,
            {
                "object": "list",
                "data": data,
                "first_id": listed.first_id,
                "last_id": listed.last_id,
                "has_more": listed.has_more,
            },
        )

    return [
        get_response,
        delete_response,
        input_items,
        cancel,
        get_completion,
        update_completion,
        delete_completion,
        messages,
        list_completions,
    ]
