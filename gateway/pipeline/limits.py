"""A model group's ceilings on what one request may ask for (``models[].limits``).

Checked in :meth:`~gateway.pipeline.pipeline.Pipeline.intake` once the group is resolved, before
the cache and any upstream call, so that no client can tie up an upstream through the gateway
(a huge ``max_tokens``, ``n``, batch of inputs or embedding size). Payloads differ per dialect,
so fields are read with ``getattr``: a field a dialect does not have is not limited there.
The pipeline calls :func:`check_limits` only for groups that set limits, so groups without them
pay nothing.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequestError
from gateway.schemas.responses import ResponsesRequest
from gateway.settings import LimitSettings

# The fields each ceiling applies to, in the order they are checked.
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# Batches of inputs (embeddings' `input`, completions' `prompt`); the Responses API's `input`
# is a conversation, not a batch, and is not limited by `max_inputs`.
_INPUT_FIELDS = ("input", "prompt")


def check_limits(limits: LimitSettings, payload: Any, model: str) -> None:
    """Refuse ``payload`` (a validated request Struct) when it asks for more than ``limits``.

    Raises:
        InvalidRequestError: 400 with ``param`` naming the field over its ceiling.
    """
    ceiling = limits.max_tokens
    if ceiling is not None:
        for field in _TOKEN_FIELDS:
            _at_most(getattr(payload, field, None), ceiling, field, model)
    ceiling = limits.max_n
    if ceiling is not None:
        _at_most(getattr(payload, "n", None), ceiling, "n", model)
    ceiling = limits.max_inputs
    if ceiling is not None and not isinstance(payload, ResponsesRequest):
        for field in _INPUT_FIELDS:
            value = getattr(payload, field, None)
            if value is not None:
                count = count_inputs(value)
                if count > ceiling:
                    raise _over(field, f"{count} inputs", ceiling, model)
    ceiling = limits.max_dimensions
    if ceiling is not None:
        _at_most(getattr(payload, "dimensions", None), ceiling, "dimensions", model)


def count_inputs(value: Any) -> int:
    """How many inputs an ``input`` or ``prompt`` holds: a string or a token array is one; a
    list of strings or of token arrays is one per entry."""
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return len(value)
    return 1


def _at_most(value: Any, ceiling: int, field: str, model: str) -> None:
    if isinstance(value, int) and value > ceiling:
        raise _over(field, str(value), ceiling, model)


def _over(field: str, asked: str, ceiling: int, model: str) -> InvalidRequestError:
    # The message starts with "<field>:" so that Anthropic's shape (no `param`) does not repeat it.
    return InvalidRequestError(
        f"{field}: the model `{model}` allows at most {ceiling} (the request asks for {asked}).",
        param=field,
        code="limit_exceeded",
    )
