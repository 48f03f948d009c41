"""Errors as each client API renders them: one renderer per dialect, for every route.

The ASGI front (inference routes) and Litestar's exception handlers (everything else) both
render through these, so a client sees the same shape whichever served it: OpenAI's envelope
``{"error": {message, type, param, code}}``, or Anthropic's ``{"type": "error", "error": {type,
message}}`` on ``/v1/messages``. Mid-stream failures become an event in the stream's own format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.codec import encode
from gateway.errors import (
    ErrorBody,
    ErrorEnvelope,
    GatewayError,
    anthropic_error_body,
    anthropic_error_json,
    anthropic_status_of,
    status_of,
)
from gateway.routes.responses import RawResponse
from gateway.sse import encode_event

# OpenAI's ``type`` for statuses the gateway answers without a GatewayError (Litestar's own).
_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True, slots=True)
class ErrorFormat:
    """How one API family renders errors.

    Attributes:
        name: ``openai`` or ``anthropic``.
    """

    name: str

    def render(self, error: GatewayError) -> tuple[int, bytes]:
        """The status and body for ``error``."""
        if self.name == "anthropic":
            return anthropic_status_of(error), anthropic_error_json(error)
        return status_of(error), error.to_json()

    def render_status(self, status: int, message: str) -> bytes:
        """A body for an HTTP status raised outside the gateway's errors (404 route...)."""
        if self.name == "anthropic":
            return anthropic_error_body(status, message)
        kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        code = "internal_error" if status >= 500 else None
        return encode(ErrorEnvelope(ErrorBody(message, kind, None, code)))

    def event(self, error: GatewayError) -> bytes:
        """A failure after a stream started, as an event its SDKs raise: OpenAI's is a data
        event holding the envelope, Anthropic's an ``error`` event."""
        if self.name == "anthropic":
            return encode_event(anthropic_error_json(error), "error")
        return b"data: " + error.to_json() + b"\n\n"

    def response(
        self, error: GatewayError, request_id: str, extra: Mapping[str, str] | None = None
    ) -> RawResponse:
        """``error`` as a complete response, with its headers, ``x-request-id`` and ``extra``."""
        status, body = self.render(error)
        return RawResponse(
            body, status, {**error.headers, "x-request-id": request_id, **(extra or {})}
        )


OPENAI_ERRORS = ErrorFormat("openai")
ANTHROPIC_ERRORS = ErrorFormat("anthropic")


def error_format_for(path: str) -> ErrorFormat:
    """The format a route's clients expect: Anthropic's under ``/v1/messages``."""
    return ANTHROPIC_ERRORS if path.startswith("/v1/messages") else OPENAI_ERRORS
