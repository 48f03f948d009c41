"""JSON on the request path: one encoder, one decoder, and the decoding of request bodies.

Every module that turns bytes into objects or back on the hot path uses these, so that a
client's body is decoded the same way (and its errors reported the same way) everywhere.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from gateway.errors import InvalidRequestError
from gateway.schemas.validation import split_validation_message

T = TypeVar("T")

encode = msgspec.json.Encoder().encode
"""Encode an object as compact JSON bytes."""

_any = msgspec.json.Decoder()


def decode(data: bytes | str) -> Any:
    """Decode trusted JSON (an upstream's answer, a cached entry) into Python objects.

    Raises:
        msgspec.DecodeError: not JSON.
    """
    return _any.decode(data)


def decode_request(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode and validate a client's request body.

    Raises:
        InvalidRequestError: not JSON, nested too deeply to decode, or a field is missing or
            invalid (``param`` names it).
    """
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        field, problem = split_validation_message(str(exc))
        message = f"Invalid `{field}`: {problem}" if field else f"Invalid request body: {problem}"
        raise InvalidRequestError(message, param=field, code="invalid_value") from None
    except msgspec.DecodeError:
        raise InvalidRequestError(
            "The request body is not valid JSON.", code="invalid_json"
        ) from None
    except RecursionError:
        raise nested_too_deeply() from None


def decode_object(body: bytes) -> dict[str, Any]:
    """A client's body, already validated by :func:`decode_request`, as a plain dict (every
    field kept, unknown ones included).

    Raises:
        InvalidRequestError: not UTF-8 where validation did not look (the validating decoder
            skips the fields it does not model without checking their text), or nested too
            deeply to decode here (the decoder's depth limit is what is left of the
            interpreter's recursion limit, so a body that just passed validation may still be
            too deep a few frames further down).
    """
    try:
        data: dict[str, Any] = _any.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(
            f"The request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    except RecursionError:
        raise nested_too_deeply() from None
    return data


def nested_too_deeply() -> InvalidRequestError:
    """The 400 for a client's body nested too deeply to decode, walk or encode again."""
    return InvalidRequestError("The request body nests too deeply.", code="invalid_json")


def with_model(body: bytes, model: str) -> bytes:
    """``body`` with its ``model`` field replaced; every other field is kept as it was."""
    data = _any.decode(body)
    data["model"] = model
    return encode(data)
