"""Errors a client can see, and the OpenAI error envelope they are rendered as.

Every failure that reaches a client is a :class:`GatewayError` (or is mapped to one at the edge),
rendered as ``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status.
Statuses follow DESIGN.md section 6: a client's mistake is always a 4xx, never a 500.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class ErrorBody(msgspec.Struct, omit_defaults=False):
    """The inner object of OpenAI's ``ErrorResponse``."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(msgspec.Struct):
    """OpenAI's ``ErrorResponse``: ``{"error": {...}}``."""

    error: ErrorBody


_encoder = msgspec.json.Encoder()


class GatewayError(Exception):
    """Base of every error that is rendered to a client.

    Attributes:
        status: the HTTP status sent to the client.
        error_type: OpenAI's ``type`` field (``invalid_request_error``, ``api_error``...).
        param: the request field at fault, when there is one.
        code: a machine-readable code (``model_not_found``, ``invalid_api_key``...).
        headers: extra response headers (``Retry-After`` on 429s, for example).
    """

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}
        # The backend that produced this error, when one did (for metrics and logs).
        self.backend: str | None = None

    def envelope(self) -> ErrorEnvelope:
        """The OpenAI error envelope for this error."""
        return ErrorEnvelope(ErrorBody(self.message, self.error_type, self.param, self.code))

    def to_json(self) -> bytes:
        """The envelope encoded as JSON bytes."""
        return _encoder.encode(self.envelope())


class InvalidRequestError(GatewayError):
    """400: malformed JSON, a missing field or a field of the wrong type or range."""

    status = 400
    error_type = "invalid_request_error"


class GuardrailBlockedError(InvalidRequestError):
    """400: a guardrail of the model group blocked the request, its answer or its stream.

    Attributes:
        guardrail: the config name of the guardrail that blocked it.
    """

    default_code = "guardrail_blocked"

    def __init__(self, guardrail: str, message: str) -> None:
        super().__init__(f"Blocked by guardrail `{guardrail}`: {message}")
        self.guardrail = guardrail


class AuthenticationError(GatewayError):
    """401: no API key, or one the gateway does not know."""

    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    """403: the key is valid but may not use this model or route."""

    status = 403
    error_type = "permission_error"


class NotFoundError(GatewayError):
    """404: an unknown model or route."""

    status = 404
    error_type = "invalid_request_error"


class ModelNotFoundError(NotFoundError):
    """404 for a model name that no model group or alias serves."""

    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist.", param="model")


class MethodNotAllowedError(GatewayError):
    """405: the route exists but not for this HTTP method."""

    status = 405
    error_type = "invalid_request_error"


class ResourceConflictError(GatewayError):
    """409: the record exists already, or cannot change as asked (a tenant that has keys)."""

    status = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLargeError(GatewayError):
    """413: the request body is over the configured limit."""

    status = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(GatewayError):
    """429: a rate limit or budget was reached; ``Retry-After`` says when to come back."""

    status = 429
    error_type = "rate_limit_error"


class ServiceUnavailableError(GatewayError):
    """503: something the gateway itself depends on (the key store, the shared limiter) cannot
    be reached."""

    status = 503
    error_type = "api_error"
    default_code = "service_unavailable"


class UpstreamError(GatewayError):
    """Base for failures of the upstream a request was sent to."""

    status = 502
    error_type = "api_error"


class UpstreamConnectionError(UpstreamError):
    """502: the upstream refused or reset the connection, or answered with garbage."""

    status = 502
    default_code = "upstream_unreachable"


class UpstreamConnectError(UpstreamConnectionError):
    """502: no connection could be made, so the request never reached the upstream.

    Always safe to retry on another backend.
    """


class UpstreamTimeoutError(UpstreamError):
    """504: the upstream did not answer (connect, first byte, idle or total) in time."""

    status = 504
    default_code = "upstream_timeout"


class UpstreamUnavailableError(UpstreamError):
    """503: no backend of the model group can take the request right now."""

    status = 503
    default_code = "no_backend_available"


class UpstreamStatusError(GatewayError):
    """An upstream answered with an error status; the status and message pass through.

    Upstream 4xx statuses reach the client as they are (the client's request was at fault);
    upstream 5xx statuses other than 503/504 become 502, because to the client it is the
    gateway's upstream that failed.
    """

    def __init__(
        self,
        upstream_status: int,
        message: str,
        *,
        error_type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, headers=headers)
        self.upstream_status = upstream_status
        self._type = error_type

    @property
    def http_status(self) -> int:
        """The status sent to an OpenAI-format client (529, Anthropic's overloaded, is a 503)."""
        if self.upstream_status < 500 or self.upstream_status in (503, 504):
            return self.upstream_status
        return 503 if self.upstream_status == 529 else 502

    def envelope(self) -> ErrorEnvelope:
        error_type = self._type or (
            "api_error" if self.upstream_status >= 500 else "invalid_request_error"
        )
        return ErrorEnvelope(ErrorBody(self.message, error_type, self.param, self.code))


def status_of(error: GatewayError) -> int:
    """The HTTP status to send for ``error`` to an OpenAI-format client."""
    if isinstance(error, UpstreamStatusError):
        return error.http_status
    return error.status


ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_status_of(error: GatewayError) -> int:
    """The status for an Anthropic-format client: as for OpenAI's, but 529 (overloaded) stays."""
    if isinstance(error, UpstreamStatusError) and error.upstream_status == 529:
        return 529
    return status_of(error)


def anthropic_error_body(status: int, message: str) -> bytes:
    """Anthropic's error shape for ``status``: ``{"type": "error", "error": {type, message}}``."""
    default = "invalid_request_error" if status < 500 else "api_error"
    kind = ANTHROPIC_ERROR_TYPES.get(status, default)
    return _encoder.encode({"type": "error", "error": {"type": kind, "message": message}})


def anthropic_error_json(error: GatewayError) -> bytes:
    """``error`` in Anthropic's shape, which has no ``param``: the field leads the message."""
    message = error.message
    if error.param and not message.startswith(f"{error.param}:"):
        message = f"{error.param}: {message}"
    return anthropic_error_body(anthropic_status_of(error), message)
