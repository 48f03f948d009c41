"""The gateway's ASGI entry point: the inference routes served directly, the rest by Litestar.

``POST`` to an inference route (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/responses``, ``/v1/messages``, ``/v1/messages/count_tokens``) goes
straight to its handler with a :class:`~gateway.routes.calls.Call`; every other request, and the
lifespan, go to the Litestar app. On a cache hit Litestar's routing, request object and
exception middleware cost more CPU than everything the gateway does, so the hottest routes skip
them. The contract for
clients is the same either way: errors are rendered in the route's API format (OpenAI's
envelope, or Anthropic's shape on ``/v1/messages``) with ``x-request-id``; other methods get
405, except on a path Litestar shares (``GET /v1/chat/completions`` lists stored completions).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from gateway.codec import nested_too_deeply
from gateway.errors import GatewayError, MethodNotAllowedError
from gateway.routes.calls import Call, ClientDisconnectedError
from gateway.routes.errors import ANTHROPIC_ERRORS, OPENAI_ERRORS

log = logging.getLogger("gateway")

Handler = Callable[[Call], Awaitable[ASGIApp]]
ErrorRenderer = Callable[[GatewayError, str], ASGIApp]
openai_error_response: ErrorRenderer = OPENAI_ERRORS.response
anthropic_error_response: ErrorRenderer = ANTHROPIC_ERRORS.response


@dataclass(frozen=True, slots=True)
class HotRoute:
    """A ``POST`` route served without Litestar.

    Attributes:
        handler: answers a call with an ASGI response; raises :class:`GatewayError` for errors.
        render_error: renders those errors in the route's API format.
        shared: other methods on the path are Litestar's (``GET /v1/chat/completions`` lists
            stored completions); otherwise they get 405.
    """

    handler: Handler
    render_error: ErrorRenderer = openai_error_response
    shared: bool = False


class GatewayApp:
    """The ASGI app uvicorn serves: hot routes first, then ``litestar``.

    Attributes:
        litestar: the Litestar app serving every other route and the lifespan.
    """

    __slots__ = ("_routes", "litestar")

    def __init__(self, litestar: ASGIApp, routes: Mapping[str, HotRoute]) -> None:
        self.litestar = litestar
        self._routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            path: str = scope["path"]
            route = self._routes.get(path)
            if route is None and path.endswith("/"):
                route = self._routes.get(path.rstrip("/"))
            if route is not None and (scope["method"] == "POST" or not route.shared):
                await self._serve(route, scope, receive, send)
                return
        await self.litestar(scope, receive, send)

    async def _serve(self, route: HotRoute, scope: HTTPScope, receive: Receive, send: Send) -> None:
        call = Call(scope, receive)
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowedError(
                    f"Method {scope['method']} is not allowed on {scope['path']}; use POST.",
                    headers={"allow": "POST"},
                )
            response = await route.handler(call)
        except ClientDisconnectedError:
            return
        except GatewayError as exc:
            response = route.render_error(exc, call.request_id)
        except RecursionError:
            # Only a client's body nests without bound: one the decoder took, nested nearly as
            # deep as it allows, can be too deep for a stage that walks or encodes it again
            # further down the stack. The client's mistake, so a 400, not a 500.
            log.debug("request body nested too deeply on %s", scope["path"])
            response = route.render_error(nested_too_deeply(), call.request_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            failure = GatewayError(
                "The gateway failed to process the request.", code="internal_error"
            )
            response = route.render_error(failure, call.request_id)
        await response(scope, receive, send)
