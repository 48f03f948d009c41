"""``GET /admin/queues``: the admission queues (master key only, as the backend admin routes).

Answers ``{"queues": {group: snapshot}}`` with each group's
:meth:`~gateway.scheduling.admission.GroupAdmission.snapshot`: admitted, capacity, saturation,
waiting per band, the first waiting tickets and the scheduler's service counters. Groups
without a ``scheduling:`` section are not listed; without admission control at all the mapping
is empty.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from gateway.routes.admin import master_key_authorizer
from gateway.state import GatewayState

_json = msgspec.json.Encoder()


def build_queue_routes(state: GatewayState) -> list[HTTPRouteHandler]:
    """The queue admin route bound to ``state`` (it reads ``state.admissions`` per request,
    so admission control built after the app is seen)."""
    authorize = master_key_authorizer(state)

    @get("/admin/queues")
    async def list_queues(request: Request[Any, Any, Any]) -> Response[Any]:
        await authorize(request)
        admissions = state.admissions
        queues = admissions.snapshot() if admissions is not None else {}
        return Response(_json.encode({"queues": queues}), media_type="application/json")

    return [list_queues]
