# TEMP STUB (deleted before merging wip-guard)
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from gateway.guardrails.base import Guardrail, GuardrailContext


class GuardrailChain:
    def __init__(self, guardrails: Sequence[tuple[str, Guardrail]]) -> None:
        self.guardrails = list(guardrails)

    async def check_request(self, context: GuardrailContext) -> Mapping[str, Any] | None:
        return None

    async def check_response(self, context: GuardrailContext, body: bytes) -> bytes:
        return body

    async def filter_stream(
        self, context: GuardrailContext, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        async for c in chunks:
            yield c
