"""The guardrail contract (``register_guardrails``).

A guardrail inspects what passes through the gateway for a model group that enables it: the
request before anything else is spent on it, the whole response, or each chunk of a stream as it
goes by. Each check returns a :class:`GuardrailVerdict`: allow it, block it (the client gets an
error with the guardrail's message), or rewrite it (the replacement goes on instead). Guardrails
run in the order the config lists them; the first block wins. Checks are awaited on the request
path, so keep them quick: a check that needs a slow service belongs on the request, not on chunks.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

from gateway.identity import Principal


class GuardrailAction(enum.StrEnum):
    """What a verdict asks for."""

    ALLOW = "allow"
    BLOCK = "block"
    REWRITE = "rewrite"


@dataclass(frozen=True, slots=True)
class GuardrailVerdict:
    """The outcome of one check; build it with :meth:`allow`, :meth:`block` or :meth:`rewrite`.

    Attributes:
        action: allow, block or rewrite.
        message: why it was blocked, shown to the client (block only).
        replacement: the body or chunk to send on instead (rewrite only).
    """

    action: GuardrailAction
    message: str | None = None
    replacement: Mapping[str, Any] | None = None

    @classmethod
    def allow(cls) -> GuardrailVerdict:
        """Let it through unchanged."""
        return _ALLOW

    @classmethod
    def block(cls, message: str) -> GuardrailVerdict:
        """Stop it. A blocked request is answered ``400`` (code ``guardrail_blocked``) with
        ``message``; a blocked response likewise; a blocked stream ends with an error event."""
        return cls(GuardrailAction.BLOCK, message=message)

    @classmethod
    def rewrite(cls, replacement: Mapping[str, Any]) -> GuardrailVerdict:
        """Send ``replacement`` on instead (a request body, response body or chunk, in the same
        wire format as what was checked)."""
        return cls(GuardrailAction.REWRITE, replacement=replacement)


_ALLOW = GuardrailVerdict(GuardrailAction.ALLOW)


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardrailContext:
    """The request a check is about.

    Attributes:
        principal: the caller.
        model: the model group the request is for.
        endpoint: the OpenAI endpoint path (``chat/completions``...).
        request_id: the ``x-request-id``.
        body: the request body as the client sent it (decoded JSON).
        state: scratch space for the checks of this one request (the same context is passed to
            each): a guardrail that needs more than one chunk keeps its state here, under its
            own name.
    """

    principal: Principal
    model: str
    endpoint: str
    request_id: str
    body: Mapping[str, Any]
    state: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Guardrail(Protocol):
    """Checks requests, responses and stream chunks of the model groups that enable it."""

    async def check_request(self, context: GuardrailContext) -> GuardrailVerdict:
        """Check ``context.body`` before the request is served (and before the cache)."""
        ...

    async def check_response(
        self, context: GuardrailContext, body: Mapping[str, Any]
    ) -> GuardrailVerdict:
        """Check a whole (non-streamed) response ``body`` before it goes to the client."""
        ...

    async def check_chunk(
        self, context: GuardrailContext, chunk: Mapping[str, Any]
    ) -> GuardrailVerdict:
        """Check one decoded stream chunk (``chat.completion.chunk``) before it is forwarded.

        Called for every chunk, in order, with the request's one context (see ``state``).
        """
        ...


GuardrailFactory: TypeAlias = Callable[..., Guardrail]
"""What ``register_guardrails`` registers; called with the guardrail's config options as keyword
arguments (``TypeError``/``ValueError`` for bad ones become config errors)."""
