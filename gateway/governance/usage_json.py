"""A usage record as a plain JSON-able mapping, both ways: the one shape every sink writes
(JSON lines, Redis stream fields, SQS messages) and every consumer (the control plane's
roll-up) reads.

Decoding is strict where it matters for money: a missing required field, or a field of the
wrong type (``"5"`` or ``5.0`` for ``cost_nanos``, ``1`` for ``cached``), is an error naming
the field, and counters may not be negative. Fields with defaults may be absent (records written
before they existed), and keys the record does not have are ignored (``type``, which the
``jsonl`` sink adds, and fields of a newer gateway), so that an older consumer still folds a
newer gateway's records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.governance.sinks import UsageRecord

USAGE_FIELDS = tuple(f.name for f in dataclasses.fields(UsageRecord))
_COUNTERS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_nanos")


def usage_dict(rec: UsageRecord) -> dict[str, Any]:
    """Every field of a usage record, by name (``cost_nanos`` an exact integer)."""
    return {name: getattr(rec, name) for name in USAGE_FIELDS}


def usage_from_dict(data: Mapping[str, Any]) -> UsageRecord:
    """The record :func:`usage_dict` made ``data`` from.

    Raises:
        ValueError: ``data`` is not a mapping, a required field is missing, a field has the
            wrong type, ``request_id`` is empty, or a token count or ``cost_nanos`` is
            negative; the message names the field.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"usage record: expected an object, got {type(data).__name__}")
    try:
        rec = msgspec.convert(dict(data), UsageRecord, strict=True)
    except msgspec.ValidationError as exc:
        raise ValueError(f"usage record: {exc}") from None
    if not rec.request_id:
        raise ValueError("usage record: `request_id` is empty")
    for name in _COUNTERS:
        if getattr(rec, name) < 0:
            raise ValueError(f"usage record: `{name}` is negative ({getattr(rec, name)})")
    return rec
