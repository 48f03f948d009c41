"""What a unit test of a tool needs to call it: a :class:`ToolContext` with no network."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from gateway.identity import ANONYMOUS
from gateway.tools.base import HttpReply, NetworkRefusedError, ToolContext


class NoNetwork:
    """An ``HttpClient`` whose policy refuses every request (these tools must not need one)."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> HttpReply:
        raise NetworkRefusedError(f"no network in this test: {method} {url}")


def tool_context(*, seconds: float = 5.0) -> ToolContext:
    """A context for an anonymous caller whose deadline is ``seconds`` from now (negative: past)."""
    return ToolContext(
        principal=ANONYMOUS,
        deadline=time.monotonic() + seconds,
        request_id="req-test",
        call_id="call_test",
        agent="test-agent",
        log=logging.getLogger("gateway.tools.test"),
        http=NoNetwork(),
    )
